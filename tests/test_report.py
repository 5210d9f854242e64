"""The risk-aware report: risk measures on hand-built draws, baseline resolution, and the
HTML (parses, holds every section, embeds its images, references nothing outside)."""

from __future__ import annotations

import html.parser
import subprocess

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from matplotlib.figure import Figure

from bayesmix.report import build as rp
from bayesmix.report import document as rd
from bayesmix.report import html as rh

DOMAINS = ["code", "english", "spanish"]


def draws_of(names, values, evals=None) -> xr.DataArray:
    coords = {"mixture": ("point", list(names))}
    if evals is not None:
        coords["eval"] = ("point", list(evals))
    return xr.DataArray(np.asarray(values, float), dims=("draw", "point"), coords=coords)


# ----------------------------------------------------------------------------- risk measures

def test_risk_table_on_hand_built_draws():
    # four joint draws of three mixtures; the baseline is "base"
    values = np.array([[1.0, 2.0, 1.5],
                       [2.0, 1.0, 1.5],
                       [1.0, 3.0, 1.6],
                       [1.0, 4.0, 1.4]])
    table = rp.risk_table(draws_of(["a", "base", "c"], values), "base", prob=0.5, quantile=0.75)
    row = table.set_index("mixture")
    np.testing.assert_allclose(row["mean"], [1.25, 2.5, 1.5])
    assert row.loc["a", "p_beat"] == 0.75  # a < base in draws 0, 2, 3
    assert row.loc["c", "p_beat"] == 0.75  # c < base in draws 0, 2, 3
    assert np.isnan(row.loc["base", "p_beat"])
    np.testing.assert_allclose(row["q90"], np.quantile(values, 0.75, axis=0))  # the "q90" column holds q_0.75 here
    np.testing.assert_allclose(row.loc["a", "cvar"], 2.0)  # only the draw at 2.0 is >= q_0.75 = 1.25
    np.testing.assert_allclose(row["lower"], np.quantile(values, 0.25, axis=0))
    np.testing.assert_allclose(row["delta"], [-1.25, 0.0, -1.0])
    assert row["rank_mean"].tolist() == [1, 3, 2]
    assert row["rank_cvar"].tolist() == [2, 3, 1]  # c's tail (1.6) beats a's (2.0)
    assert row.loc["base", "rank_p_beat"] == 3  # the baseline never "beats" itself
    assert rp.rank(table, "cvar")["mixture"].tolist() == ["c", "a", "base"]
    assert rp.rank(table, "mean")["mixture"].tolist() == ["a", "c", "base"]


def test_risk_table_errors():
    d = draws_of(["a", "b"], np.ones((3, 2)))
    with pytest.raises(KeyError, match="baseline 'z'"):
        rp.risk_table(d, "z")
    with pytest.raises(ValueError, match="repeated"):
        rp.risk_table(draws_of(["a", "a"], np.ones((3, 2))), "a")
    with pytest.raises(KeyError, match="coordinate"):
        rp.risk_table(d, "a", label="run")
    with pytest.raises(ValueError, match="rank_by"):
        rp.rank(rp.risk_table(d, "a"), "median")


def test_select_eval():
    d = draws_of(["a", "a", "a"], np.ones((2, 3)), evals=["web", "code", "overall"])
    assert rp.select_eval(d)["eval"].values.tolist() == ["overall"]
    assert rp.select_eval(d, "code")["eval"].values.tolist() == ["code"]
    single = draws_of(["a", "b"], np.ones((2, 2)), evals=["web", "web"])
    assert rp.select_eval(single).sizes["point"] == 2
    with pytest.raises(ValueError, match="no 'overall'"):
        rp.select_eval(draws_of(["a", "a"], np.ones((2, 2)), evals=["web", "code"]))
    with pytest.raises(KeyError, match="'books'"):
        rp.select_eval(d, "books")


# ----------------------------------------------------------------------------- mixtures and baseline

def run_frame():
    rows = [("uniform@100k", 1 / 3, 1 / 3, 1 / 3), ("uniform@200k", 1 / 3, 1 / 3, 1 / 3),
            ("code-led@100k", 0.8, 0.1, 0.1), ("r7", 0.1, 0.8, 0.1), ("r8", 0.1, 0.8, 0.1)]
    return pd.DataFrame(rows, columns=["run", *(f"mix.{d}" for d in DOMAINS)])


def test_name_mixtures_uses_the_run_stem():
    named = rp.name_mixtures(run_frame())
    assert named["name"].tolist() == ["uniform", "code-led", "r7"]
    assert named["mixture"].tolist() == ["m0", "m1", "m2"]
    dup = pd.DataFrame({"run": ["x@1", "x@2"], "mix.a": [1.0, 0.0], "mix.b": [0.0, 1.0]})
    assert rp.name_mixtures(dup)["name"].tolist() == ["x (m0)", "x (m1)"]
    with pytest.raises(KeyError, match="mix"):
        rp.name_mixtures(pd.DataFrame({"run": ["a"]}))


def test_resolve_baseline_forms():
    named = rp.name_mixtures(run_frame())
    assert rp.resolve_baseline("uniform", named, DOMAINS)["name"] == "uniform"
    assert rp.resolve_baseline("code-led@100k", named, DOMAINS)["name"] == "code-led"
    assert rp.resolve_baseline("m2", named, DOMAINS)["name"] == "r7"
    given = rp.resolve_baseline("code=0.8,english=0.1,spanish=0.1", named, DOMAINS)
    assert given["name"] == "code-led"
    new = rp.resolve_baseline({"code": 0.5, "english": 0.5}, named, DOMAINS)
    assert new["name"] == "baseline" and new["mix.spanish"] == 0.0
    empty = named.iloc[:0]
    uniform = rp.resolve_baseline("uniform", empty, DOMAINS)
    np.testing.assert_allclose(uniform[[f"mix.{d}" for d in DOMAINS]].to_numpy(float), 1 / 3)


def test_resolve_baseline_errors():
    named = rp.name_mixtures(run_frame())
    with pytest.raises(KeyError, match="unknown baseline 'web-led'.*uniform, code-led, r7"):
        rp.resolve_baseline("web-led", named, DOMAINS)
    with pytest.raises(KeyError, match="unknown domain 'books'"):
        rp.resolve_baseline("books=1.0", named, DOMAINS)
    with pytest.raises(ValueError, match="DOMAIN=PROPORTION"):
        rp.parse_mixture("code=0.5,english", DOMAINS)
    with pytest.raises(ValueError, match="sum to"):
        rp.resolve_baseline("code=0.5", named, DOMAINS)


def test_candidate_mixtures():
    named = rp.name_mixtures(run_frame())
    base = rp.resolve_baseline({"code": 0.5, "english": 0.5}, named, DOMAINS)
    extra = pd.DataFrame({"mix.code": [0.2], "mix.english": [0.2], "mix.spanish": [0.6]})
    cands = rp.candidate_mixtures(named, DOMAINS, base, n_random=20, extra=extra, seed=1)
    assert cands["source"].value_counts().to_dict() == {"random": 20, "tried": 3, "baseline": 1, "given": 1}
    assert cands["mixture"].is_unique
    cols = [f"mix.{d}" for d in DOMAINS]
    np.testing.assert_allclose(cands[cols].sum(axis=1), 1.0)
    again = rp.candidate_mixtures(named, DOMAINS, base, n_random=20, extra=extra, seed=1)
    pd.testing.assert_frame_equal(cands, again)
    tried_base = rp.resolve_baseline("uniform", named, DOMAINS)
    assert "baseline" not in set(rp.candidate_mixtures(named, DOMAINS, tried_base, n_random=0)["source"])


# ----------------------------------------------------------------------------- HTML

class Collector(html.parser.HTMLParser):
    """Ids, image sources and every URL-bearing attribute of a document."""

    def __init__(self):
        super().__init__()
        self.ids, self.images, self.urls, self.tags = set(), [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        for key in ("src", "href", "data", "action", "poster"):
            if key in attrs:
                self.urls.append(attrs[key])


def parse(text: str) -> Collector:
    c = Collector()
    c.feed(text)
    c.close()
    return c


def toy_report(*, failed: bool, with_optional: bool = True) -> rd.Report:
    rng = np.random.default_rng(0)
    names = ["best <b>", "second", "uniform", "other"]
    values = rng.normal([3.00, 3.02, 3.10, 3.05], 0.02, (400, 4))
    draws = draws_of(names, values)
    mix = pd.DataFrame(rng.dirichlet(np.ones(3), 4), columns=[f"mix.{d}" for d in DOMAINS])
    for c in mix:
        draws = draws.assign_coords({c: ("point", mix[c].to_numpy())})
    ranking = rp.rank(rp.risk_table(draws, "uniform"), "mean")
    per_eval = pd.DataFrame([(m, e, 3.0 + k * 0.01, 2.95, 3.1) for k, m in enumerate(names[:3])
                             for e in ["code", "web", "overall"]], columns=["mixture", "eval", "mean", "lower", "upper"])
    diagnostics = pd.DataFrame([
        {"part": "step law", "rhat_max": 1.002, "divergences": 0, "ok": True, "problems": ""},
        {"part": "mixing law", "rhat_max": 1.08 if failed else 1.004, "divergences": 3 if failed else 0,
         "ok": not failed, "problems": "R-hat 1.080 > 1.01; 3 divergent transitions" if failed else ""},
    ])
    optional = {}
    if with_optional:
        optional = dict(
            multiplier=pd.DataFrame({"mixture": ["best <b>"], "median": [1.48], "lower": [1.2], "upper": [1.9],
                                    "prob_above_1": [0.97]}),
            budget=pd.DataFrame({"eval": ["overall"] * 3, "stage": ["step", "size", "mix"], "share": [0.5, 0.3, 0.2]}),
            budget_advice="Most uncertainty comes from the step law: train the proxy runs longer.",
            suggestions=pd.DataFrame({"mix.code": [0.6], "mix.english": [0.3], "mix.spanish": [0.1],
                                      "log_ei": [-2.3], "mean": [3.01]}),
        )
    report = rd.Report(title="toy <report>", baseline="uniform", ranking=ranking, diagnostics=diagnostics,
                       per_eval=per_eval, settings={"seed": 0, "target": "1B"},
                       data_summary=pd.DataFrame({"what": ["runs"], "value": [12]}), **optional)
    fig = Figure()
    fig.add_subplot().plot([0, 1], [1, 0])
    report.add_figure("ranking", fig, "a line")
    report.add_figure("model", fig, "the same line")
    return report


def test_report_html_has_every_section_and_embeds_its_images():
    text = rh.render_html(toy_report(failed=True))
    doc = parse(text)
    assert set(rd.SECTIONS) <= doc.ids
    assert "diagnostics-warning" in doc.ids and "diagnostics-ok" not in doc.ids
    assert "R-hat 1.080 &gt; 1.01; 3 divergent transitions" in text
    assert len(doc.images) == 2 and all(src.startswith("data:image/png;base64,") for src in doc.images)
    assert all(u.startswith(("data:", "#")) for u in doc.urls), [u for u in doc.urls if not u.startswith("data:")]
    assert "http://" not in text.replace("http://www.w3.org", "") and "https://" not in text
    assert "<script" not in text.lower() and "<link" not in text.lower()
    assert "best &lt;b&gt;" in text and "toy &lt;report&gt;" in text  # names are escaped
    assert "1.48x" in text and "Most uncertainty comes from the step law" in text
    assert "log_ei" in text


def test_report_shows_the_backtests_with_their_numbers():
    from bayesmix.pipeline.discrepancy import Backtest, Discrepancy

    misses = pd.DataFrame({"unit": ["a", "b", "c"], "distance": [0.7, 0.7, 0.7], "predicted": [2.0, 2.1, 2.2],
                           "observed": [1.9, 2.0, 2.15]})
    misses["miss"] = misses["observed"] - misses["predicted"]
    step = Backtest("step", misses, 0.01, prior_scale=0.05)
    empty = Backtest("size", misses.iloc[:0], 0.0, prior_scale=0.05)
    tried = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.2, 0.3, 0.5]])
    disc = Discrepancy.build({"step": step, "size": empty}, {"step": 1.1, "size": 0.98}, tried, seed=0)
    report = toy_report(failed=False)
    report.backtest = disc.table(0.9)
    text = rh.render_html(report)
    assert "backtest" in parse(text).ids and "Extrapolation backtests" in text
    row = report.backtest.set_index("stage").loc["step"]
    assert f"{row['max_abs_miss']:.3f}" == "0.100" and "0.100" in text
    assert f"{row['target_mean']:+.3f} ± {row['target_sd']:.3f} at 1.10" in text
    assert "3 backtests" in text and "borrowed from step" in text
    assert f"{row['coverage_without']:.0%} → {row['coverage_with']:.0%}" in text
    assert "Extrapolation backtests" not in rh.render_html(toy_report(failed=False))


def test_report_html_without_failures_or_optional_parts():
    report = toy_report(failed=False, with_optional=False)
    report.missing["multiplier"] = "Not available: no step law."
    text = rh.render_html(report)
    doc = parse(text)
    assert set(rd.SECTIONS) <= doc.ids
    assert "diagnostics-ok" in doc.ids and "diagnostics-warning" not in doc.ids
    assert "Not available: no step law." in text
    assert "No suggestions" not in text or "suggestions" in doc.ids


def test_report_validates_its_inputs():
    report = toy_report(failed=False)
    with pytest.raises(KeyError, match="baseline 'nope'"):
        rd.Report(title="x", baseline="nope", ranking=report.ranking, diagnostics=report.diagnostics)
    with pytest.raises(KeyError, match="cvar"):
        rd.Report(title="x", baseline="uniform", ranking=report.ranking.drop(columns="cvar"),
                  diagnostics=report.diagnostics)
    with pytest.raises(ValueError, match="rank_by"):
        rd.Report(title="x", baseline="uniform", ranking=report.ranking, diagnostics=report.diagnostics,
                  rank_by="median")
    with pytest.raises(ValueError, match="unknown section"):
        report.add_figure("appendix", Figure(), "x")


def test_write_report_is_atomic(tmp_path):
    path = rh.write_report(toy_report(failed=False), tmp_path / "sub" / "r.html")
    assert path.is_file() and not list(path.parent.glob("*.tmp"))
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_pdf_without_a_browser_says_so(tmp_path, monkeypatch):
    monkeypatch.delenv("BAYESMIX_BROWSER", raising=False)
    monkeypatch.setattr(rh.shutil, "which", lambda name: None)
    with pytest.raises(FileNotFoundError, match="Chromium"):
        rh.html_to_pdf(tmp_path / "r.html", tmp_path / "r.pdf")


@pytest.mark.skipif(rh.find_browser() is None, reason="no headless Chromium/Chrome on PATH")
def test_report_renders_in_a_headless_browser(tmp_path):
    path = rh.write_report(toy_report(failed=True), tmp_path / "r.html")
    out = subprocess.run([rh.find_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                          path.as_uri()], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    doc = parse(out.stdout)
    assert set(rd.SECTIONS) <= doc.ids and "diagnostics-warning" in doc.ids
    pdf = rh.html_to_pdf(path, tmp_path / "r.pdf")
    assert pdf.read_bytes()[:4] == b"%PDF"


# ----------------------------------------------------------------------------- from a fit

@pytest.fixture(scope="module")
def small_fit(tmp_path_factory):
    """A small three-domain mixing-law fit at its point fit (:func:`conftest.mocked_nuts`: the
    report is under test, not the sampler), saved to disk."""
    from bayesmix.inference.fit import fit
    from bayesmix.data.simulate import dirichlet_mixtures, simulate_mixing
    from conftest import mocked_nuts

    mix = dirichlet_mixtures(10, DOMAINS, seed=0)
    mix.iloc[0] = 1 / 3
    t = np.array([[-1.0, 0.5, 0.5], [0.8, -0.2, -0.6]])
    runs = simulate_mixing(mix, c=np.array([2.0, 2.3]), b=np.array([0.0, -0.2]), t=t, evals=["web", "code"],
                           noise=0.01, seed=0)
    runs.loc[runs["run"] == "r000", "run"] = "uniform"
    import warnings

    with warnings.catch_warnings(), mocked_nuts():
        warnings.simplefilter("ignore")
        result = fit(runs, "mix", seed=0, sampler=dict(num_chains=2, num_warmup=200, num_samples=150,
                                                       progress_bar=False))
    path = result.save(tmp_path_factory.mktemp("fit") / "fit.nc")
    return result, path


def test_report_from_fit_end_to_end(small_fit, tmp_path):
    result, _ = small_fit
    report = rp.report_from_fit(result, baseline="uniform", n_random=100, top=5, seed=0)
    assert report.baseline == "uniform"
    assert len(report.ranking) == 10 + 100
    assert report.ranking["rank_mean"].iloc[0] == 1
    assert report.ranking["mean"].is_monotonic_increasing
    assert set(report.per_eval["eval"]) == {"web", "code", "overall"}
    assert report.multiplier is None and "step law" in report.missing["multiplier"]
    assert {"ranking", "capabilities", "diagnostics", "model"} <= set(report.figures)
    text = rh.render_html(report)
    doc = parse(text)
    assert set(rd.SECTIONS) <= doc.ids
    assert len(doc.images) >= 5 and all(s.startswith("data:image/png;base64,") for s in doc.images)
    with pytest.raises(KeyError, match="unknown baseline"):
        rp.report_from_fit(result, baseline="nonesuch", n_random=0)


def test_report_cli(small_fit, tmp_path, capsys):
    from bayesmix.cli import main

    _, path = small_fit
    cands = tmp_path / "cands.csv"
    pd.DataFrame({"mixture": ["mine"], "code": [0.1], "english": [0.1], "spanish": [0.8]}).to_csv(cands, index=False)
    out = tmp_path / "report.html"
    code = main(["report", str(path), "--baseline", "uniform", "--out", str(out), "--random", "50",
                 "--candidates", str(cands), "--rank-by", "cvar", "--top", "100"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "recommended:" in printed and str(out.resolve()) in printed
    text = out.read_text(encoding="utf-8")
    assert set(rd.SECTIONS) <= parse(text).ids and "mine <small>given</small>" in text
    assert main(["report", str(path), "--baseline", "nonesuch", "--out", str(out)]) == 2
    assert "unknown baseline 'nonesuch'" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing.nc"), "--out", str(out)]) == 2
    assert main(["report", str(path), "--out", str(out), "--top", "0"]) == 2


def _report_from(named: pd.DataFrame, domains: list[str], baseline_row: pd.Series, values, *,
                 candidates: pd.DataFrame | None = None, confidence: float = 0.9) -> rd.Report:
    """A report ranking ``named`` (and ``candidates``) from joint draws ``values(mixtures) -> (draws, n)``."""
    cols = [f"mix.{d}" for d in domains]

    def predict_draws(mixtures):
        draws = draws_of(mixtures["mixture"], values(mixtures))
        return draws.assign_coords({c: ("point", mixtures[c].to_numpy()) for c in cols})

    table, _, per_eval = rp.ranked_candidates(named, domains, baseline_row, predict_draws, candidates=candidates,
                                              n_random=0, rank_by="mean", prob=0.9, seed=0)
    return rd.Report(title="t", baseline=str(baseline_row["name"]), ranking=table, per_eval=per_eval, top=5,
                     confidence=confidence, diagnostics=pd.DataFrame(columns=["part", "ok", "problems"]))


def _noisy(mean_of):
    """Draws (200, n) of ``mean_of(mixtures)`` plus seeded noise of sd 0.01."""
    def values(mixtures):
        rng = np.random.default_rng(0)
        return mean_of(mixtures) + 0.01 * rng.standard_normal((200, len(mixtures)))
    return values


def test_a_mixture_outside_the_trust_region_is_flagged_and_not_recommended():
    """The lowest prediction sits on a face the tried mixtures never reach (code cut to zero):
    it is ranked first, not recommended, and the headline says why."""
    named = pd.DataFrame({"mixture": ["m0", "m1", "m2"], "name": ["uniform", "code-led", "web-led"],
                          "mix.code": [1 / 3, 0.6, 0.2], "mix.web": [1 / 3, 0.2, 0.6], "mix.books": [1 / 3, 0.2, 0.2]})
    face = pd.DataFrame({"mixture": ["face"], "source": ["given"], "mix.code": [0.0], "mix.web": [0.5],
                         "mix.books": [0.5]})
    # the face is predicted lowest, code-led next
    report = _report_from(named, ["code", "web", "books"], named.iloc[0], _noisy(
        lambda m: np.where(m["mixture"] == "face", 2.0, 3.0 - m["mix.code"].to_numpy())), candidates=face)
    top = report.ranking.iloc[0]
    assert top["mixture"] == "face" and top["outside_range"] == "code, books" and not top["inside_support"]
    assert report.best["mixture"] == "code-led"
    assert "its share of code, books lies outside the range the tried mixtures span" in report.outside_note
    assert "(outside)" in rh.render_html(report)
    report.trust_region = False  # overridable
    assert report.best["mixture"] == "face"


def test_a_joint_corner_inside_every_tried_range_is_flagged_by_the_hull_and_not_recommended():
    """Each share of the corner lies inside the tried range, but no weighting of the tried
    mixtures gives it (domains b and c cut to zero together): the hull names it."""
    domains = ["a", "b", "c", "d"]
    cols = [f"mix.{d}" for d in domains]
    pairs = [[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5], [0.5, 0.0, 0.5, 0.0], [0.0, 0.5, 0.0, 0.5],
             [0.25, 0.25, 0.25, 0.25]]
    named = pd.DataFrame(pairs, columns=cols).assign(mixture=[f"m{i}" for i in range(5)],
                                                     name=["ab", "cd", "ac", "bd", "uniform"])
    corner = pd.DataFrame({"mixture": ["corner"], "source": ["given"], **{c: [v] for c, v in
                                                                          zip(cols, [0.5, 0.0, 0.0, 0.5])}})
    # the corner is predicted lowest, "ab" and "bd" next
    report = _report_from(named, domains, named.iloc[4], _noisy(
        lambda m: np.where(m["mixture"] == "corner", 2.0, 3.0 - m["mix.b"].to_numpy())), candidates=corner)
    top = report.ranking.iloc[0]
    assert top["mixture"] == "corner" and top["outside_range"] == "" and not top["inside_support"]
    assert top["hull_distance"] == pytest.approx(0.5)
    assert report.best["mixture"] in {"ab", "bd"}
    assert "no weighting of the tried mixtures gives it (total-variation distance 0.50" in report.outside_note


def _confidence_report(confidence: float = 0.9) -> rd.Report:
    """Three tried mixtures, all inside the trust region: "bold" has the lowest mean but beats the
    baseline "uniform" in 3 of 4 joint draws; "safe" is a little better than it in every draw."""
    named = pd.DataFrame({"mixture": ["m0", "m1", "m2"], "name": ["uniform", "bold", "safe"],
                          "mix.code": [1 / 3, 0.5, 0.4], "mix.web": [1 / 3, 0.3, 0.3],
                          "mix.books": [1 / 3, 0.2, 0.3]})
    base = np.array([2.0, 2.0, 2.0, 2.0])
    values = {"uniform": base, "bold": base + np.array([-0.4, -0.4, -0.4, 0.2]), "safe": base - 0.01}
    return _report_from(named, ["code", "web", "books"], named.iloc[0],
                        lambda m: np.stack([values.get(name, base + 1.0) for name in m["mixture"]], 1),
                        confidence=confidence)


def test_a_mixture_is_recommended_only_when_it_beats_the_baseline_with_the_set_confidence():
    report = _confidence_report()
    assert report.ranking["mixture"].iloc[0] == "bold" and report.trusted["mixture"] == "bold"
    assert report.ranking.set_index("mixture").loc["bold", "p_beat"] == 0.75
    assert report.best["mixture"] == "safe"  # P = 1: the best-ranked mixture that reaches 90%
    assert report.confidence_note == ("bold ranks best inside the trust region (1.7500) but beats the baseline "
                                      "uniform with probability 0.75, below the 90% a change of mixture needs: "
                                      "safe is the best-ranked mixture that reaches it.")
    assert report.confidence_note in rh.render_html(report)
    assert report.settings["recommendation rule"] == ("best by posterior mean inside the trust region, and "
                                                      "P(beats baseline) at least 90%; else the baseline")
    # at 0.75 the bold mixture is confident enough; at 0 the rule is off
    assert _confidence_report(0.75).best["mixture"] == "bold" and _confidence_report(0.75).confidence_note == ""
    assert _confidence_report(0.0).best["mixture"] == "bold"


def test_the_baseline_stays_recommended_when_no_mixture_beats_it_with_confidence():
    report = _confidence_report()
    report.ranking = report.ranking[report.ranking["mixture"] != "safe"].reset_index(drop=True)
    assert report.best["mixture"] == "uniform"
    assert report.confidence_note.endswith("so the recommendation stays with the baseline; the suggested runs are "
                                           "the ones that can tell.")
    page = rh.render_html(report)
    assert "which is the baseline itself." in page and "best-ranked, not confident (bold)" in page


def test_confidence_outside_the_unit_interval_is_refused():
    with pytest.raises(ValueError, match=r"confidence must lie in \[0, 1\), got 1.0"):
        _confidence_report(1.0)


def test_a_grid_step_stage_is_shown_as_exact_inference_with_its_checks():
    import types

    from bayesmix.pipeline.curves import grid_summary

    checks = {"edge_mass": np.array([1e-9, 2e-8]), "resolution": np.array([4.2, 5.0]), "ok": np.array([True, True])}
    lanes = {"lanes": 16, "rhat_pooled": 1.004, "rhat_max": 1.03, "fail_fraction": 0.0, "divergences": 0,
             "lanes_with_divergences": 0}
    result = types.SimpleNamespace(diagnostics={"step": grid_summary(checks) | {"lane": "curve"}, "size": lanes})
    table = rp.stage_diagnostics(result).set_index("part")
    step = table.loc["step law (exact grid posterior per curve)"]
    assert bool(step["ok"]) and step["notes"] == ("exact posterior by quadrature, no chains: largest posterior share "
                                                  "on the grid's edge 2e-08, coarsest resolution 4.2 cells per "
                                                  "posterior sd")
    assert table.loc["size law (one lane per dataset)", "notes"] == ""
    line = rh._diag_line(table.reset_index().iloc[0])
    assert line == "step law (exact grid posterior per curve): " + step["notes"]
    assert "pooled R-hat 1.004" in rh._diag_line(table.reset_index().iloc[1])
