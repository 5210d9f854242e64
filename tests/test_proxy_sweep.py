"""Sweeps: local sequential and process-pool backends, Ray with two local workers, the CLI."""

from __future__ import annotations

import pandas as pd
import pytest

from bayesmix.data.table import read_runs
from bayesmix.proxy import sweeps as sweep_module
from bayesmix.proxy.cli import main as cli_main
from bayesmix.proxy.mixtures import MixtureError
from bayesmix.proxy.sweeps import SweepError, sweep
from bayesmix.proxy.train import RunConflictError

TINY = dict(steps=12, plan_steps=30, batch_size=4, seq_len=32, checkpoints=3, eval_tokens=256, threads=1)
MIXTURES = {"codey": {"code": 0.7, "english": 0.3}, "prose": {"english": 0.5, "spanish": 0.5}}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tokens")


def test_local_sweep_writes_every_run_and_skips_finished_ones(tmp_path, cache_dir):
    out = tmp_path / "runs.parquet"
    rows = sweep(MIXTURES, ["100k", "200k"], out=out, cache_dir=cache_dir, progress=False, **TINY)
    assert sorted(rows["run"].unique()) == ["codey@100k", "codey@200k", "prose@100k", "prose@200k"]
    assert rows.groupby("run")["size"].first().nunique() == 2
    pd.testing.assert_frame_equal(read_runs(out), rows)
    assert (tmp_path / "runs.parquet.work" / "codey@100k" / "state.json").exists()
    again = sweep(MIXTURES, ["100k", "200k"], out=out, cache_dir=cache_dir, progress=False, details=True, **TINY)
    assert again.trained == [] and len(again.skipped) == 4
    pd.testing.assert_frame_equal(again.rows, rows)
    more = sweep({"tab": {"tables": 1}}, ["100k"], out=out, cache_dir=cache_dir, progress=False, **TINY)
    assert read_runs(out)["run"].nunique() == 5 and set(more["run"]) == {"tab@100k"}


def test_bad_mixture_in_a_file_fails_before_any_training(tmp_path, cache_dir):
    (tmp_path / "m.csv").write_text("name,code,english,web\ngood,0.5,0.5,0\nbad,0.5,0.2,0.3\nworse,1.5,-0.5,0\n")
    out = tmp_path / "runs.parquet"
    with pytest.raises(MixtureError, match=r"3 bad mixture\(s\).*unknown domain\(s\) \['web'\]"):
        sweep(tmp_path / "m.csv", ["100k"], out=out, cache_dir=cache_dir, progress=False, **TINY)
    (tmp_path / "m.csv").write_text("name,code,english\ngood,0.5,0.5\nbad,0.5,0.2\nworse,1.5,-0.5\n")
    with pytest.raises(MixtureError, match=r"2 bad mixture\(s\): mixture 'bad': proportions sum to 0.7.*negative"):
        sweep(tmp_path / "m.csv", ["100k"], out=out, cache_dir=cache_dir, progress=False, **TINY)
    assert not out.exists() and not (tmp_path / "runs.parquet.work").exists()


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(backend="slurm"), ValueError, "unknown backend 'slurm'"),
    (dict(workers=0), ValueError, "workers must be a positive integer"),
    (dict(sizes=[]), ValueError, "at least one model size"),
    (dict(sizes=["1T"]), ValueError, "unknown model size '1T'"),
    (dict(mixtures={}), MixtureError, "no mixtures to run"),
    (dict(steps=50, plan_steps=10), ValueError, "plan_steps"),
    (dict(out="runs.txt"), ValueError, "unsupported run-table file type '.txt'"),
])
def test_bad_sweep_arguments(tmp_path, cache_dir, kwargs, error, message):
    args = dict(mixtures=MIXTURES, sizes=["100k"], out=tmp_path / "r.parquet", cache_dir=cache_dir,
                progress=False, **TINY)
    args.update(kwargs)
    args["out"] = tmp_path / args["out"]
    with pytest.raises(error, match=message):
        sweep(args.pop("mixtures"), args.pop("sizes"), **args)


def test_out_table_of_another_corpus_is_refused_before_training(tmp_path, cache_dir):
    out = tmp_path / "runs.csv"
    pd.DataFrame({"run": ["x"], "size": [1], "step": [1], "eval": ["web"], "loss": [1.0], "mix.web": [1.0]}).to_csv(
        out, index=False)
    with pytest.raises(ValueError, match=r"has mixture columns \['mix.web'\] but this corpus gives"):
        sweep(MIXTURES, ["100k"], out=out, cache_dir=cache_dir, progress=False, **TINY)
    assert not (tmp_path / "runs.csv.work").exists()


def test_conflicting_rerun_is_caught_before_training(tmp_path, cache_dir):
    sweep({"codey": MIXTURES["codey"]}, ["100k"], workdir=tmp_path, cache_dir=cache_dir, progress=False, **TINY)
    with pytest.raises(RunConflictError, match="codey@100k"):
        sweep(MIXTURES, ["100k"], workdir=tmp_path, cache_dir=cache_dir, progress=False, **dict(TINY, seed=1))


def test_failed_runs_are_reported_and_the_rest_kept(tmp_path, cache_dir, monkeypatch):
    real = sweep_module.train_run

    def flaky(**kwargs):
        if kwargs["run"].startswith("prose"):
            raise RuntimeError("out of memory")
        return real(**kwargs)

    monkeypatch.setattr(sweep_module, "train_run", flaky)
    out = tmp_path / "runs.csv"
    with pytest.raises(SweepError, match=r"1 run\(s\) failed: prose@100k: RuntimeError: out of memory") as info:
        sweep(MIXTURES, ["100k"], out=out, cache_dir=cache_dir, progress=False, **TINY)
    assert set(info.value.rows["run"]) == {"codey@100k"}
    assert set(read_runs(out)["run"]) == {"codey@100k"}


@pytest.mark.slow
def test_process_pool_matches_sequential(tmp_path, cache_dir):
    seq = sweep(MIXTURES, ["100k"], cache_dir=cache_dir, progress=False, **TINY)
    pool = sweep(MIXTURES, ["100k"], cache_dir=cache_dir, workers=2, progress=False, **TINY)
    pd.testing.assert_frame_equal(pool, seq, check_exact=True)


@pytest.mark.slow
def test_ray_backend_with_two_local_workers(tmp_path, cache_dir):
    pytest.importorskip("ray")
    out = tmp_path / "runs.parquet"
    result = sweep(MIXTURES, ["100k"], out=out, cache_dir=cache_dir, backend="ray", workers=2, progress=False,
                   details=True, **TINY)
    assert sorted(result.trained) == ["codey@100k", "prose@100k"]
    local = sweep(MIXTURES, ["100k"], cache_dir=cache_dir, progress=False, **TINY)
    pd.testing.assert_frame_equal(result.rows, local, check_exact=True)
    assert set(read_runs(out)["run"]) == {"codey@100k", "prose@100k"}


def test_cli_trains_lists_and_reports_errors(tmp_path, cache_dir, capsys):
    assert cli_main(["train", "--list-sizes"]) == 0
    assert "| 100k | 2 | 64 | 2 | 98,944 |" in capsys.readouterr().out
    assert cli_main(["train", "--list-domains"]) == 0
    assert "english" in capsys.readouterr().out
    out = tmp_path / "runs.csv"
    common = ["--steps", "8", "--plan-steps", "20", "--batch-size", "4", "--seq-len", "32", "--checkpoints", "2",
              "--eval-tokens", "256", "--threads", "1", "--cache-dir", str(cache_dir), "--no-progress"]
    assert cli_main(["train", "--mixture", "code=0.5,english=0.5", "--name", "half", "--sizes", "100k",
                     "--out", str(out), *common]) == 0
    printed = capsys.readouterr().out
    assert "wrote 10 rows (1 runs x 2 checkpoint steps x 5 eval domains)" in printed
    assert set(read_runs(out)["run"]) == {"half@100k"}
    (tmp_path / "m.json").write_text('{"a": {"code": 1}, "b": {"code": 0.5, "tables": 0.5}}')
    assert cli_main(["train", "--mixtures", str(tmp_path / "m.json"), "--out", str(out), *common]) == 0
    assert set(read_runs(out)["run"]) == {"half@100k", "a@100k", "b@100k"}
    capsys.readouterr()
    for argv, message in [
        (["--mixture", "code=0.5,web=0.5", "--out", str(out)], "unknown domain(s) ['web']"),
        (["--mixture", "code=0.5", "--out", str(out)], "sum to 0.5, not 1"),
        (["--mixture", "code=1"], "--out is required"),
        (["--out", str(out)], "give --mixtures FILE or --mixture"),
        (["--mixture", "code=1", "--sizes", "9Q", "--out", str(out)], "unknown model size '9Q'"),
        (["--mixtures", str(tmp_path / "none.csv"), "--out", str(out)], "mixtures file not found"),
        (["--mixture", "code=1", "--domain", "x", "--out", str(out)], "--domain expects NAME=PATH"),
    ]:
        assert cli_main(["train", *argv, *common]) == 2, argv
        assert message in capsys.readouterr().err
