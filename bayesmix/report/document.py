"""The report as plain data: sections, embedded figures, tables and settings (no fit needed to render it).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt

import pandas as pd

from bayesmix.decide.support import HULL_TOLERANCE



SECTIONS = ("recommendation", "truth", "ranking", "capabilities", "multiplier", "budget", "suggestions",
            "diagnostics", "model", "data")


SECTION_TITLES = {"recommendation": "Recommendation", "truth": "Real target runs", "ranking": "Ranking", "capabilities": "Capabilities",
                  "multiplier": "Compute multiplier", "budget": "Error budget", "suggestions": "Next experiments",
                  "diagnostics": "Diagnostics", "model": "Fitted laws", "data": "Data & settings"}


CRITERIA = {"mean": ("posterior mean", True), "p_beat": ("P(beats baseline)", False),
            "q90": ("90th percentile", True), "cvar": ("CVaR 90%", True)}


@dataclasses.dataclass
class EmbeddedFigure:
    """An embedded figure: PNG bytes, a caption and its display width (px)."""

    png: bytes
    caption: str
    width: int = 760
    wide: bool = False


@dataclasses.dataclass
class Report:
    """Everything the HTML shows, as plain data.

    ``ranking``: :func:`risk_table` rows (best first; ``mix.*`` columns, a
    ``source`` column optional); ``baseline`` its name. Optional tables are
    ``None`` when unavailable, with the reason in ``missing[section]``:
    ``per_eval`` (mixture, eval, mean, lower, upper), ``multiplier`` (mixture,
    median, lower, upper[, prob_above_1]), ``budget`` (eval, stage, share) with ``budget_advice``,
    ``suggestions`` (mix.* plus any columns), ``truth`` (held-out target-scale runs observed
    against predicted: :func:`bayesmix.pipeline.verify.target_truth`) with ``truth_note``, ``backtest`` (one row per stage
    replayed: :meth:`bayesmix.pipeline.discrepancy.Discrepancy.table`). ``diagnostics``: one row per fitted
    part (``part``, ``rhat_max``, ``ess_bulk_min``, ``ess_tail_min``,
    ``divergences``, ``ok``, ``problems``, optional ``notes``: the mode of inference, e.g. chains
    combined by stacking). ``figures``: section -> embedded
    figures. ``settings``: label -> value, in order. ``data_summary``: a small
    table describing the run table.
    """

    title: str
    baseline: str
    ranking: pd.DataFrame
    diagnostics: pd.DataFrame
    rank_by: str = "mean"
    prob: float = 0.9
    top: int = 8
    target: str = ""
    per_eval: pd.DataFrame | None = None
    multiplier: pd.DataFrame | None = None
    budget: pd.DataFrame | None = None
    budget_advice: str | None = None
    suggestions: pd.DataFrame | None = None
    suggestions_note: str = ""
    truth: pd.DataFrame | None = None
    truth_note: str = ""
    backtest: pd.DataFrame | None = None
    trust_region: bool = True
    confidence: float = 0.9  # P(beats baseline) a mixture needs to be recommended instead of the baseline
    figures: dict[str, list[EmbeddedFigure]] = dataclasses.field(default_factory=dict)
    settings: dict[str, object] = dataclasses.field(default_factory=dict)
    data_summary: pd.DataFrame | None = None
    missing: dict[str, str] = dataclasses.field(default_factory=dict)
    rerun_hint: str = "Rerun with longer chains (more warm-up and draws)"
    caveat: str = ""  # plain text put before the recommendation (e.g. the law explains less than a constant)
    created: str = dataclasses.field(default_factory=lambda: _dt.datetime.now().strftime("%Y-%m-%d %H:%M"))

    def __post_init__(self):
        if not 0 <= self.confidence < 1:
            raise ValueError(f"confidence must lie in [0, 1), got {self.confidence}")
        self.settings.setdefault("recommendation rule", (
            f"best by {CRITERIA.get(self.rank_by, (self.rank_by,))[0]}"
            + (" inside the trust region" if self.trust_region else "")
            + f", and P(beats baseline) at least {self.confidence:.0%}; else the baseline"))
        if self.rank_by not in CRITERIA:
            raise ValueError(f"rank_by must be one of {list(CRITERIA)}, got {self.rank_by!r}")
        required = ["mixture", "mean", "lower", "upper", "p_beat", "q90", "cvar"]
        missing = [c for c in required if c not in self.ranking]
        if missing:
            raise KeyError(f"ranking table lacks column(s) {missing} (build it with risk_table)")
        if self.baseline not in set(self.ranking["mixture"].astype(str)):
            raise KeyError(f"baseline {self.baseline!r} is not in the ranking table")

    @property
    def failed(self) -> list[str]:
        """One line per fitted part whose diagnostics failed."""
        bad = self.diagnostics[~self.diagnostics["ok"].astype(bool)] if len(self.diagnostics) else self.diagnostics
        return [f"{row['part']}: {row['problems']}" for _, row in bad.iterrows()]

    @property
    def admitted(self) -> pd.DataFrame:
        """The ranking rows the trust region admits: those inside the trust region of the tried
        mixtures (``inside_support``, :mod:`bayesmix.decide.support`), or every row when
        ``trust_region`` is False or no row is inside."""
        table = self.ranking
        if self.trust_region and "inside_support" in table and table["inside_support"].any():
            return table[table["inside_support"].astype(bool)]
        return table

    @property
    def trusted(self) -> pd.Series:
        """The best-ranked mixture the trust region admits."""
        return self.admitted.iloc[0]

    @property
    def best(self) -> pd.Series:
        """The recommended mixture: the best-ranked row the trust region admits that beats the
        baseline with probability at least ``confidence``; the baseline when none does. A change
        of mixture is a claim that it is better, and the report makes that claim only when the
        posterior backs it at ``confidence``."""
        pool = self.admitted
        confident = pool[(pool["mixture"].astype(str) == self.baseline) | (pool["p_beat"] >= self.confidence)]
        if len(confident):
            return confident.iloc[0]
        return self.ranking[self.ranking["mixture"].astype(str) == self.baseline].iloc[0]

    def _why_outside(self, row: pd.Series) -> str:
        """Why a ranked mixture lies outside the trust region, in words."""
        radius = self.ranking.attrs.get("trust_radius", float("nan"))
        reasons = []
        if row["distance"] > radius + 1e-9:
            reasons.append(f"total-variation distance {row['distance']:.2f} to the nearest tried mixture, beyond the "
                           f"design's widest gap {radius:.2f}")
        if str(row.get("outside_range", "") or ""):
            reasons.append(f"its share of {row['outside_range']} lies outside the range the tried mixtures span "
                           "(a domain cut below every tried share can get worse with training, which no run saw)")
        elif float(row.get("hull_distance", 0.0) or 0.0) > HULL_TOLERANCE:
            reasons.append(f"no weighting of the tried mixtures gives it (total-variation distance "
                           f"{row['hull_distance']:.2f} to their convex hull): its shares are each inside the tried "
                           "range, but no tried mixture combines them, e.g. several domains cut low together")
        return "; ".join(reasons) or "outside the trust region"

    @property
    def outside_note(self) -> str:
        """Why the top-ranked mixture is not the one the trust region admits (empty when it is)."""
        top, trusted = self.ranking.iloc[0], self.trusted
        if str(top["mixture"]) == str(trusted["mixture"]):
            if "inside_support" in self.ranking and not bool(trusted["inside_support"]):
                return (f"{trusted['mixture']} lies outside the trust region of the tried mixtures "
                        f"({self._why_outside(trusted)}): its prediction is an extrapolation that no backtest "
                        "checks, and its interval may be too narrow.")
            return ""
        return (f"The lowest predicted loss, {top['mixture']} ({top['mean']:.4f}), lies outside the trust region of "
                f"the tried mixtures ({self._why_outside(top)}); its interval is an extrapolation that no backtest "
                "checks, and it is not recommended until a run near it confirms it.")

    @property
    def confidence_note(self) -> str:
        """Why the best mixture the trust region admits is not recommended: it does not beat the
        baseline with probability ``confidence`` (empty when it is recommended)."""
        trusted, best = self.trusted, self.best
        if str(trusted["mixture"]) == str(best["mixture"]):
            return ""
        then = ("so the recommendation stays with the baseline; the suggested runs are the ones that can tell"
                if str(best["mixture"]) == self.baseline else
                f"{best['mixture']} is the best-ranked mixture that reaches it")
        return (f"{trusted['mixture']} ranks best inside the trust region ({trusted['mean']:.4f}) but beats the "
                f"baseline {self.baseline} with probability {trusted['p_beat']:.2f}, below the {self.confidence:.0%} "
                f"a change of mixture needs: {then}.")

    def add_figure(self, section: str, fig, caption: str, *, width: int = 760, dpi: int = 110,
                   wide: bool = False) -> None:
        """Embed a matplotlib figure (or PNG bytes) in ``section``; ``wide`` figures take the
        full page width instead of a column."""
        if section not in SECTIONS:
            raise ValueError(f"unknown section {section!r}; sections are {list(SECTIONS)}")
        from bayesmix.report.plots import figure_png

        png = fig if isinstance(fig, bytes) else figure_png(fig, dpi=dpi)
        self.figures.setdefault(section, []).append(EmbeddedFigure(png, caption, width, wide))
