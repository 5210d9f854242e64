"""Size law ``L(N) = E + B N^-beta``: one curve per (mixture, eval domain).

Uses one checkpoint per run: ``step`` when given (every run must have it),
otherwise each run's last checkpoint. Exponents and irreducible shares are
partially pooled across mixtures and eval domains.
"""

from __future__ import annotations

import warnings

import pandas as pd

from bayesmix.data.table import RunTableError, select_evals
from bayesmix.laws.base import LawData
from bayesmix.laws.mixtures import mix_columns, mixture_labels
from bayesmix.laws.powerlaw import PowerLaw

MIN_SIZES = 3


def rows_at_step(runs: pd.DataFrame, step: int | None) -> pd.DataFrame:
    """One checkpoint per run: ``step`` if given, else each run's last step."""
    if step is None:
        last = runs.groupby("run")["step"].transform("max")
        rows = runs[runs["step"] == last]
        if rows["step"].nunique() > 1:
            warnings.warn(
                f"runs end at different steps {sorted(rows['step'].unique().tolist())}; "
                "using each run's last checkpoint (pass step= to pick one)",
                UserWarning,
                stacklevel=3,
            )
        return rows
    rows = runs[runs["step"] == step]
    missing = sorted(set(runs["run"]) - set(rows["run"]))
    if missing:
        raise RunTableError(f"run(s) {missing[:10]} have no checkpoint at step={step}")
    return rows


class SizeLaw(PowerLaw):
    name = "size"
    x_column = "size"
    curve_keys = ("mixture", "eval")

    def prepare(self, runs: pd.DataFrame, *, step: int | None = None, evals: list[str] | None = None) -> LawData:
        """Size-law curves over the model sizes of each mixture."""
        rows = rows_at_step(runs, step)
        rows = select_evals(rows, evals, law=self.name)
        n_sizes = rows["size"].nunique()
        if n_sizes < MIN_SIZES:
            raise RunTableError(
                f"law 'size' needs at least {MIN_SIZES} distinct sizes, the table has {n_sizes}"
            )
        rows = rows.assign(mixture=mixture_labels(rows).to_numpy())
        per_mix = rows.groupby("mixture")["size"].nunique()
        single = per_mix[per_mix < 2]
        if len(single):
            runs_single = sorted(rows[rows["mixture"].isin(single.index)]["run"].unique())
            raise RunTableError(
                f"law 'size' needs each mixture at 2 or more sizes; run(s) {runs_single[:10]} "
                "have a mixture seen at one size only"
            )
        rows = rows.assign(curve=rows["mixture"] + "|" + rows["eval"].astype(str)).reset_index(drop=True)
        data = self._curve_frame(rows)
        mixtures = rows.drop_duplicates("mixture").set_index("mixture")[mix_columns(rows)]
        data.meta.update(step=None if step is None else int(step),
                         mixtures=mixtures.reset_index().to_dict(orient="list"))
        return data
