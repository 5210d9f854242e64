"""The main job: settings, the fallback table, argument checks, and the demo end to end."""

from __future__ import annotations

import html.parser
import time

import numpy as np
import pandas as pd
import pytest

from bayesmix import demo
from bayesmix.cli import main
from bayesmix.data.table import validate_runs
from bayesmix.report.document import SECTIONS


def test_target_parameters():
    from bayesmix.proxy.model import non_embedding_params

    assert demo.target_parameters("1.2M") == non_embedding_params("1.2M")
    assert demo.target_parameters(5_000_000) == 5_000_000
    assert demo.target_parameters("123456") == 123456
    with pytest.raises(ValueError, match="unknown model size"):
        demo.target_parameters("7B")
    with pytest.raises(ValueError, match="positive"):
        demo.target_parameters(0)


def test_simulated_table_has_the_demo_design():
    table = validate_runs(demo.simulated_table(seed=0))
    assert table["run"].nunique() == 48
    assert table["size"].nunique() == 3 and table["step"].nunique() == 10 and table["eval"].nunique() == 5
    assert {"uniform@100k", "code-led@450k", "dirichlet09@200k"} <= set(table["run"])
    uniform = table[table["run"] == "uniform@200k"].iloc[0]
    np.testing.assert_allclose(uniform[[c for c in table if c.startswith("mix.")]].to_numpy(float), 0.2)
    again = demo.simulated_table(seed=0)
    pd.testing.assert_frame_equal(demo.simulated_table(seed=0), again)


def test_settings_build_the_pipeline():
    p = demo.QUICK.pipeline(progress=False)
    assert p.target_size == demo.target_parameters(demo.TARGET_SIZE)
    assert p.target_step == demo.TARGET_STEP and p.min_step == demo.MIN_STEP and p.n_draws == demo.QUICK.n_draws
    assert demo.THOROUGH.n_draws > demo.QUICK.n_draws
    assert p.size_sampler == "grid" and demo.THOROUGH.pipeline().size_sampler == "grid"  # the pipeline's default: NUTS


@pytest.mark.parametrize("argv,message", [
    (["--live", "-1"], "--live must be 0 or more"),
    (["--n-draws", "1"], "--n-draws must be at least 2"),
    (["--q", "0"], "--q must be at least 1"),
    (["--target-size", "7B"], "unknown model size '7B'"),
])
def test_demo_cli_rejects_bad_arguments(argv, message, tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err


def test_demo_cli_missing_runs_file(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--runs", str(tmp_path / "nope.csv")]) == 2
    assert "nope.csv" in capsys.readouterr().err


def test_run_demo_rejects_negative_live(tmp_path):
    with pytest.raises(ValueError, match="non-negative"):
        demo.run_demo(tmp_path, live=-1)


class Ids(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.images = set(), 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "img" and attrs.get("src", "").startswith("data:image/png;base64,"):
            self.images += 1


@pytest.mark.slow
def test_demo_end_to_end_on_the_bundled_table(tmp_path):
    """`bayesmix demo` with its default settings: bundled table -> pipeline -> report, in minutes."""
    lines = []
    t0 = time.perf_counter()
    paths = demo.run_demo(tmp_path / "out", seed=0, progress=False, log=lines.append)
    seconds = time.perf_counter() - t0
    # a guard against a pathological slowdown on a shared 2-core machine (the suite runs two workers); the
    # extrapolation backtests added about a minute of point fits (its speed target, about a minute in all, is
    # the speed issue's)
    assert seconds < 30 * 60, f"the demo took {seconds:.0f} s"
    report = paths["report"]
    assert report.is_file() and lines[-1] == f"report written to {report.resolve()}"
    doc = Ids()
    doc.feed(report.read_text(encoding="utf-8"))
    assert set(SECTIONS) <= doc.ids and doc.images >= 6
    ranking = pd.read_csv(paths["ranking"])
    assert {"uniform"} <= set(ranking["mixture"]) and ranking["mean"].is_monotonic_increasing
    runs = pd.read_parquet(paths["runs"])
    assert runs["run"].nunique() >= 16
    text = report.read_text(encoding="utf-8")
    truth = [line for line in lines if line.startswith("checked against real target-scale runs: ")]
    assert len(truth) == 1 and "held-out target-scale runs lie inside their 90% interval" in truth[0]
    assert "Checked against real target-scale runs" in text and "face-no-prose@1.2M" in text
    assert "Acquisition (log_ei) over candidate mixtures" in text  # the landscape the suggestions came from


@pytest.mark.slow
def test_live_round_adds_the_suggested_mixtures_and_refits(tmp_path):
    """--live wiring through the closed loop (:class:`Campaign`): suggestions -> runner -> new
    rows in the table -> refit -> report, every phase saved under ``campaign/``.

    The runner here stands in for the proxy trainer (tested on its own in
    test_proxy_*): it returns the uniform runs' curves, shifted slightly, under
    each suggested mixture, at the demo's live sizes.
    """
    import dataclasses

    from bayesmix.inference.nuts import SamplerConfig
    from bayesmix.laws.mixtures import MIX_PREFIX, mix_columns

    runs = demo.simulated_table(seed=0)
    tiny = SamplerConfig.for_lanes(num_chains=1, num_warmup=60, num_samples=30)
    settings = dataclasses.replace(demo.QUICK, n_draws=4, q=2, n_random=50, budget=False, fit_config=tiny,
                                   lane_config=tiny, curve_config=dataclasses.replace(tiny, dense_mass=True))
    calls = []

    def runner(suggestions):
        calls.append((list(suggestions["mixture"]), suggestions[mix_columns(suggestions)].to_numpy()))
        template = runs[runs["run"].str.startswith("uniform@")]
        rows = []
        for k, (_, row) in enumerate(suggestions.iterrows()):
            new = template.assign(run=template["run"].str.replace("uniform", str(row["mixture"])),
                                  loss=template["loss"] * (1.0 - 0.01 * (k + 1)))
            for c in mix_columns(suggestions):
                new[c] = float(row[c])
            rows.append(new)
        return pd.concat(rows, ignore_index=True)

    verified = []

    def verifier(mixtures, *, settings, workdir, progress=None):
        """Stands in for training at the target: the bundled uniform@1.2M curve under each name."""
        from bayesmix.proxy.demo import demo_target_runs

        verified.append(dict(mixtures))
        template = demo_target_runs().query("run == 'uniform@1.2M'")
        parts = []
        for name, mixture in mixtures.items():
            part = template.assign(run=f"{name}@1.2M")
            for d, p in mixture.items():
                part[MIX_PREFIX + d] = p
            parts.append(part)
        return pd.concat(parts, ignore_index=True)

    lines = []
    paths = demo.run_demo(tmp_path / "out", live=1, seed=0, settings=settings, runs=runs, progress=False,
                          log=lines.append, runner=runner, verify=True, verifier=verifier)
    # the baseline always; the recommendation when it is not the baseline; the best-ranked mixture of
    # the trust region when the confidence rule declined it
    assert len(verified) == 1 and "verify-uniform" in verified[0]
    assert set(verified[0]) - {"verify-uniform"} in ({"verify-recommended"}, {"verify-best-ranked"},
                                                      {"verify-recommended", "verify-best-ranked"})
    np.testing.assert_allclose(list(verified[0]["verify-uniform"].values()), 0.2)
    text = paths["report"].read_text(encoding="utf-8")
    assert all(f"{name}@1.2M" in text for name in verified[0]) and "Checked against real target-scale runs" in text
    n = len(verified[0])
    assert any(line.startswith(f"checked against real target-scale runs: {k} of {n}") for k in range(n + 1)
               for line in lines)
    assert [c[0] for c in calls] == [["r0-next1", "r0-next2"]] and calls[0][1].shape == (2, 5)
    np.testing.assert_allclose(calls[0][1].sum(axis=1), 1.0, atol=1e-9)
    table = pd.read_parquet(paths["runs"])
    live = table[table["run"].str.startswith("r0-next")]
    assert live["run"].nunique() == 2 * 3  # two mixtures at the template's three sizes
    got = live.drop_duplicates("run").sort_values("run")[[MIX_PREFIX + d for d in
                                                          ("code", "english", "spanish", "dictionary", "tables")]]
    np.testing.assert_allclose(np.unique(got.to_numpy().round(12), axis=0),
                               np.unique(calls[0][1].round(12), axis=0))
    assert any(line.startswith("live round 1/1: training 2 suggested mixtures") for line in lines)
    # the loop is a campaign on disk: two fitted rounds saved, the last round's suggestions and landscape
    from bayesmix.design.campaign import Campaign

    campaign = Campaign.resume(tmp_path / "out" / "campaign", runner=None, fit_fn=lambda rows, s: None)
    assert campaign.round == 1 and campaign.phase == "run" and len(campaign.history) == 1
    assert (tmp_path / "out" / "campaign" / "fits" / "round_001" / "tree.json").is_file()
    assert len(campaign.landscape()) > 100 and campaign.landscape()["log_ei"].notna().all()
    assert "Acquisition (log_ei) over candidate mixtures" in text
    assert sum("pipeline fitted" in line for line in lines) == 2
    assert "live rounds" in paths["report"].read_text(encoding="utf-8")
