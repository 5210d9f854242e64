"""Step law ``L(S) = E + A S^-alpha``: one curve per (run, eval domain).

Fitted on the checkpoints a run reached at or above ``min_step`` (warm-up
excluded), pooled over all runs and eval domains in the table (exponent and
irreducible share partially pooled). Predicts any curve at any step.
"""

from __future__ import annotations

import pandas as pd

from bayesmix.data.table import RunTableError, select_evals
from bayesmix.laws.base import LawData
from bayesmix.laws.powerlaw import PowerLaw

MIN_CHECKPOINTS = 3


class StepLaw(PowerLaw):
    name = "step"
    x_column = "step"
    curve_keys = ("run", "eval", "size")

    def prepare(self, runs: pd.DataFrame, *, min_step: int = 1, evals: list[str] | None = None) -> LawData:
        """Rows with ``step >= min_step`` (and the chosen evals) as step-law curves."""
        rows = runs[runs["step"] >= min_step]
        rows = select_evals(rows, evals, law=self.name)
        if rows.empty:
            raise RunTableError(f"law 'step': no rows at or above min_step={min_step}")
        counts = rows.groupby(["run", "eval"])["step"].nunique()
        short = counts[counts < MIN_CHECKPOINTS]
        if len(short):
            runs_short = sorted(short.index.get_level_values("run").unique())
            raise RunTableError(
                f"law 'step' needs at least {MIN_CHECKPOINTS} checkpoints at or above "
                f"min_step={min_step} per run; too few in run(s) {runs_short[:10]}"
                + (" ..." if len(runs_short) > 10 else "")
            )
        rows = rows.assign(curve=rows["run"].astype(str) + "|" + rows["eval"].astype(str))
        data = self._curve_frame(rows.reset_index(drop=True))
        data.meta.update(min_step=int(min_step))
        return data
