"""Load a fitted pipeline saved by :meth:`bayesmix.pipeline.result.PipelineResult.save`.

    result.save("fit")                 # fit/tree.json, fit/arrays.nc, fit/tables/*.parquet
    result = load_pipeline("fit")      # predictions, suggestions and reports as before

Nothing is re-fitted: the draws, the stages' prepared data and the backtests are the ones saved
(:mod:`bayesmix.data.store`); only the classes below are built from the folder.
"""

from __future__ import annotations

from pathlib import Path

from bayesmix.data.schedule import Schedule
from bayesmix.data.store import StoreError, is_saved_tree, load_tree
from bayesmix.inference.nuts import SamplerConfig
from bayesmix.laws.base import LawData, Query
from bayesmix.pipeline.discrepancy import Backtest, Discrepancy
from bayesmix.pipeline.nested import Pipeline
from bayesmix.pipeline.result import STORE_FORMAT, PipelineResult
from bayesmix.pipeline.runners import StageOutput
from bayesmix.pipeline.stages import Plan, Stage

TYPES = {cls.__name__: cls for cls in (PipelineResult, Pipeline, Plan, Stage, StageOutput, LawData, Query, Schedule,
                                      SamplerConfig, Discrepancy, Backtest)}


def load_pipeline(path) -> PipelineResult:
    """The :class:`PipelineResult` saved in the folder ``path``."""
    result = load_tree(path, format=STORE_FORMAT, types=TYPES, what="saved pipeline (written by `bayesmix pipeline "
                       "--out` or PipelineResult.save)")
    if not isinstance(result, PipelineResult):
        raise StoreError(f"{Path(path)} holds a {type(result).__name__}, not a pipeline result")
    return result


def load_result(path):
    """A saved pipeline (a folder) or a saved law fit (a ``.nc`` file), by what ``path`` is."""
    if Path(path).is_dir():
        if not is_saved_tree(path):
            raise FileNotFoundError(f"no fit at {path}: a folder, but not a saved pipeline (written by "
                                    "`bayesmix pipeline --out`); a law fit is a .nc file")
        return load_pipeline(path)
    from bayesmix.inference.fit import load_fit

    return load_fit(path)


def is_saved_pipeline(path) -> bool:
    """Whether ``path`` is a folder written by :meth:`PipelineResult.save`."""
    return is_saved_tree(path)


__all__ = ["is_saved_pipeline", "load_pipeline", "load_result"]
