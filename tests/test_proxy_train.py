"""Training runs: learning, run-table rows, resume after a kill, skipping, bad settings."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bayesmix.data.table import MIX_PREFIX, read_runs, validate_runs
from bayesmix.proxy import SIZES, bundled_corpus
from bayesmix.proxy.mixtures import MixtureError
from bayesmix.proxy.schedule import checkpoint_steps
from bayesmix.proxy.train import RunConflictError, TrainConfig, train_run
from bayesmix.data.schedule import SCHEDULE_COLUMNS, Schedule, run_schedules

REPO = Path(__file__).resolve().parents[1]
TINY = dict(steps=24, plan_steps=60, batch_size=4, seq_len=32, checkpoints=4, eval_tokens=256, threads=1,
            progress=False)
MIX = {"code": 0.5, "english": 0.5}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tokens")


def test_loss_decreases_on_a_tiny_run(cache_dir):
    rows = train_run({"english": 1.0}, "100k", cache_dir=cache_dir, steps=60, batch_size=8, seq_len=64,
                     checkpoints=3, first_checkpoint=4, eval_tokens=1024, threads=1, progress=False)
    english = rows[rows["eval"] == "english"].sort_values("step")["loss"].to_numpy()
    assert english[0] > english[-1] + 0.5
    assert english[-1] < 3.8  # well below log(256) = 5.55 for bytes


def test_rows_follow_the_run_table_schema(cache_dir):
    rows = train_run(MIX, "100k", cache_dir=cache_dir, name="half", **TINY)
    domains = bundled_corpus().names
    assert list(rows.columns) == ["run", "size", "step", "tokens", "eval", "loss", *(MIX_PREFIX + d for d in domains),
                                  "lr", *SCHEDULE_COLUMNS]
    pd.testing.assert_frame_equal(rows, validate_runs(rows))
    schedule = run_schedules(rows)["half@100k"]
    assert schedule == Schedule("cosine", peak_lr=SIZES["100k"].lr, warmup=1, final_ratio=0.1, plan_steps=60)
    np.testing.assert_allclose(rows["lr"], schedule.lr(rows["step"]))
    assert set(rows["run"]) == {"half@100k"}
    assert set(rows["size"]) == {SIZES["100k"].non_embedding_params}
    steps = checkpoint_steps(24, 4, 24 // 32 or 1)
    assert sorted(set(rows["step"])) == steps
    assert (rows["tokens"] == rows["step"] * 4 * 32).all()
    assert sorted(rows["eval"].unique()) == sorted(domains)
    assert len(rows) == len(steps) * len(domains)
    assert rows[MIX_PREFIX + "code"].eq(0.5).all() and rows[MIX_PREFIX + "tables"].eq(0).all()
    assert np.isfinite(rows["loss"]).all() and (rows["loss"] > 0).all()
    assert rows["size"].dtype == np.int64 and rows["step"].dtype == np.int64


def test_resume_after_a_crash_reproduces_the_uninterrupted_rows_exactly(cache_dir, tmp_path):
    full = train_run(MIX, "100k", cache_dir=cache_dir, workdir=tmp_path / "a", **TINY)

    class Crash(Exception):
        pass

    def crash_after_second(step, rows):
        if rows["step"].nunique() == 2:
            raise Crash

    with pytest.raises(Crash):
        train_run(MIX, "100k", cache_dir=cache_dir, workdir=tmp_path / "b", on_checkpoint=crash_after_second, **TINY)
    seen = []
    resumed = train_run(MIX, "100k", cache_dir=cache_dir, workdir=tmp_path / "b",
                        on_checkpoint=lambda step, rows: seen.append(step), **TINY)
    assert seen == sorted(set(full["step"]))[2:], "resumed from the second checkpoint, not from scratch"
    pd.testing.assert_frame_equal(resumed, full, check_exact=True)


@pytest.mark.slow
def test_resume_after_sigkill_reproduces_the_uninterrupted_rows(cache_dir, tmp_path):
    settings = dict(TINY, steps=40, checkpoints=5, save_every=3)
    full = train_run(MIX, "100k", cache_dir=cache_dir, **settings)
    script = textwrap.dedent(f"""
        import os, signal
        from bayesmix.proxy.train import train_run
        def kill(step, rows):
            if rows["step"].nunique() == 3:
                os.kill(os.getpid(), signal.SIGKILL)
        train_run({MIX!r}, "100k", cache_dir={str(cache_dir)!r}, workdir={str(tmp_path)!r},
                  on_checkpoint=kill, **{settings!r})
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    run_dir = tmp_path / "code50-english50@100k"
    assert (run_dir / "checkpoint.pt").exists() and not (run_dir / "state.json").exists()
    partial = pd.read_parquet(run_dir / "rows.parquet")
    assert partial["step"].nunique() == 3
    resumed = train_run(MIX, "100k", cache_dir=cache_dir, workdir=tmp_path, **settings)
    pd.testing.assert_frame_equal(resumed, full, check_exact=True)
    assert not (run_dir / "checkpoint.pt").exists()


def test_finished_run_is_skipped_and_rows_go_to_out(cache_dir, tmp_path):
    out = tmp_path / "runs.csv"
    first = train_run(MIX, "100k", cache_dir=cache_dir, workdir=tmp_path / "w", out=out, **TINY)
    calls = []
    again = train_run(MIX, "100k", cache_dir=cache_dir, workdir=tmp_path / "w", out=out,
                      on_checkpoint=lambda *a: calls.append(a), **TINY)
    assert calls == []
    pd.testing.assert_frame_equal(again, first)
    table = read_runs(out)
    assert len(table) == len(first)
    other = train_run({"tables": 1.0}, "100k", cache_dir=cache_dir, out=out, name="t", **TINY)
    assert read_runs(out)["run"].nunique() == 2 and len(read_runs(out)) == len(first) + len(other)


def test_changed_settings_for_an_existing_run_are_a_conflict(cache_dir, tmp_path):
    train_run(MIX, "100k", cache_dir=cache_dir, workdir=tmp_path, **dict(TINY, steps=8))
    with pytest.raises(RunConflictError, match=r"different settings \(config.steps: 8 -> 24"):
        train_run(MIX, "100k", cache_dir=cache_dir, workdir=tmp_path, **TINY)


def test_bad_mixture_fails_before_any_training(cache_dir, tmp_path):
    with pytest.raises(MixtureError, match=r"unknown domain\(s\) \['web'\]"):
        train_run({"web": 1.0}, "100k", cache_dir=cache_dir, workdir=tmp_path, **TINY)
    with pytest.raises(MixtureError, match="sum to 0.5"):
        train_run({"code": 0.5}, "100k", cache_dir=cache_dir, workdir=tmp_path, **TINY)
    with pytest.raises(MixtureError, match="negative"):
        train_run({"code": 1.5, "english": -0.5}, "100k", cache_dir=cache_dir, workdir=tmp_path, **TINY)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("settings, message", [
    (dict(steps=100, plan_steps=50), r"plan_steps \(50\) must be at least steps \(100\)"),
    (dict(steps=0), "steps must be a positive integer"),
    (dict(batch_size=0), "batch_size must be a positive integer"),
    (dict(seq_len=4096), "seq_len 4096 exceeds the context 1024"),
    (dict(lr=-1.0), "lr must be positive"),
    (dict(first_checkpoint=500, steps=100), r"first_checkpoint \(500\) exceeds steps \(100\)"),
    (dict(min_lr_ratio=2.0), r"min_lr_ratio must lie in \[0, 1\]"),
    (dict(attention="magic"), "attention must be one of"),
    (dict(seed=-1), "seed must be a non-negative integer"),
    (dict(threads=0), "threads must be a positive integer"),
    (dict(device="tpu"), "unknown device 'tpu'|unsupported device"),
    (dict(learning_rate=1e-3), r"unknown training setting\(s\) \['learning_rate'\]"),
])
def test_bad_settings_fail_before_training(cache_dir, settings, message):
    with pytest.raises(ValueError, match=message):
        train_run(MIX, "100k", cache_dir=cache_dir, progress=False, **settings)


def test_threads_setting_is_restored(cache_dir):
    import torch

    before = torch.get_num_threads()
    train_run(MIX, "100k", cache_dir=cache_dir, **dict(TINY, steps=2, checkpoints=1))
    assert torch.get_num_threads() == before


def test_unknown_size_and_eval_domains_are_rejected(cache_dir):
    with pytest.raises(ValueError, match="unknown model size '7B'"):
        train_run(MIX, "7B", cache_dir=cache_dir, **TINY)
    with pytest.raises(MixtureError, match=r"eval domain\(s\) \['web'\] not in the corpus"):
        train_run(MIX, "100k", cache_dir=cache_dir, evals=["web"], **TINY)
    with pytest.raises(TypeError, match="config must be a TrainConfig"):
        train_run(MIX, "100k", 3, cache_dir=cache_dir)


def test_config_defaults_depend_on_size_and_plan():
    cfg = TrainConfig(steps=300, plan_steps=1000).resolve(SIZES["450k"])
    assert cfg.lr == SIZES["450k"].lr and cfg.warmup == 20 and cfg.first_checkpoint == 9
    assert "device" not in cfg.identity() and cfg.identity()["plan_steps"] == 1000


def test_bf16_autocast_path_runs_on_cpu(cache_dir):
    rows = train_run(MIX, "100k", cache_dir=cache_dir, precision="bf16", **dict(TINY, steps=6, checkpoints=2))
    assert np.isfinite(rows["loss"]).all()


def test_user_corpus_with_eval_subset(tmp_path, cache_dir):
    (tmp_path / "c" / "alpha").mkdir(parents=True)
    (tmp_path / "c" / "alpha" / "a.txt").write_text("abc " * 20_000)
    (tmp_path / "c" / "beta.jsonl").write_text("".join('{"text": "xyz %d "}\n' % i for i in range(8000)))
    rows = train_run({"alpha": 1.0}, "100k", corpus=tmp_path / "c", cache_dir=cache_dir, evals=["beta"], **TINY)
    assert set(rows["eval"]) == {"beta"} and {"mix.alpha", "mix.beta"} <= set(rows.columns)


@pytest.mark.slow
def test_compiled_model_trains_like_the_eager_one(cache_dir):
    settings = dict(TINY, steps=6, checkpoints=2)
    eager = train_run(MIX, "100k", cache_dir=cache_dir, **settings)
    compiled = train_run(MIX, "100k", cache_dir=cache_dir, compile=True, **settings)
    assert np.allclose(eager["loss"], compiled["loss"], atol=2e-3)
