"""The command line end to end on a small table, and its one-line errors."""

import subprocess
import sys

import pandas as pd
import pytest

from bayesmix.cli import main

EXAMPLE = "bayesmix/data/bundled/example_runs.csv"
FAST = ["--chains", "2", "--warmup", "150", "--draws", "150", "--no-progress"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bayesmix.cli", *args], capture_output=True, text=True)


def test_help_lists_commands_and_examples():
    out = run_cli("--help")
    assert out.returncode == 0
    assert "fit" in out.stdout and "predict" in out.stdout
    fit_help = run_cli("fit", "--help")
    assert fit_help.returncode == 0 and "examples:" in fit_help.stdout and "--law" in fit_help.stdout


@pytest.mark.slow
def test_fit_then_predict_end_to_end(tmp_path, capsys):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    fit_path = tmp_path / "fit.nc"
    assert main(["fit", str(root / EXAMPLE), "--law", "mix", "--out", str(fit_path), *FAST]) == 0
    out = capsys.readouterr().out
    assert "diagnostics: R-hat max" in out and f"saved mix fit to {fit_path}" in out
    candidates = tmp_path / "cands.csv"
    pd.DataFrame({"mixture": ["u"], "web": [0.25], "code": [0.25], "books": [0.25], "papers": [0.25]}).to_csv(
        candidates, index=False)
    pred = tmp_path / "pred.parquet"
    assert main(["predict", str(fit_path), "--mixtures", str(candidates), "--out", str(pred), "--prob", "0.5"]) == 0
    table = pd.read_parquet(pred)
    assert table["eval"].tolist() == ["code", "papers", "web", "overall"]
    assert (table["lower"] < table["upper"]).all()


@pytest.mark.parametrize(
    "args, message",
    [
        (["fit", "missing.csv", "--out", "x.nc"], "no such file"),
        (["predict", "missing.nc", "--steps", "10"], "no fit at missing.nc"),
        (["fit", EXAMPLE, "--law", "cubic", "--out", "x.nc"], "unknown law 'cubic'"),
        (["fit", EXAMPLE, "--prior", "bogus=1", "--out", "x.nc"], "unknown prior name"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert message.lower() in lines[0].lower()


def test_a_bad_input_exits_2_from_the_shell_with_one_line():
    out = run_cli("fit", "missing.csv", "--out", "x.nc")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr and "no such file" in lines[0].lower()


def test_pipeline_step_sampler_option_reaches_the_pipeline():
    from bayesmix.cli import build_parser
    from bayesmix.cli.pipeline import pipeline_from_args

    parser = build_parser()
    assert pipeline_from_args(parser.parse_args(["pipeline", "runs.csv"])).step_sampler == "grid"
    assert pipeline_from_args(parser.parse_args(["pipeline", "runs.csv", "--step-sampler", "nuts"])).step_sampler == "nuts"
    with pytest.raises(SystemExit):
        parser.parse_args(["pipeline", "runs.csv", "--step-sampler", "hmc"])


def test_pipeline_budget_method_option_defaults_to_the_split():
    from bayesmix.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["pipeline", "runs.csv", "--budget"]).budget_method == "split"
    assert parser.parse_args(["pipeline", "runs.csv", "--budget-method", "refit"]).budget_method == "refit"
    with pytest.raises(SystemExit):
        parser.parse_args(["pipeline", "runs.csv", "--budget-method", "ablate"])
