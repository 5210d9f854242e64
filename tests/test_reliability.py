"""One test per reliability finding: outputs checked first and written atomically, an escaped
report, no orphaned workers, safe domain and run names, foreign fit files, silent garbage
flagged, clear errors. The bulk of the bad inputs is in test_bad_inputs.py."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import pytest

from bayesmix.cli import main
from bayesmix.data.table import RunTableError, validate_runs
from bayesmix.data.io import OutputError, atomic_write, check_output

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "bayesmix" / "data" / "bundled" / "example_runs.csv"
TINY = dict(steps=12, plan_steps=30, batch_size=4, seq_len=32, checkpoints=3, eval_tokens=256, threads=1,
            progress=False)
PAYLOAD = "<script>alert(1)</script>"


def one_error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


# ----------------------------------------------------------------------------- 1. outputs


def test_fit_refuses_to_overwrite_its_run_table(tmp_path, capsys):
    runs = tmp_path / "r.csv"
    runs.write_bytes(EXAMPLE.read_bytes())
    assert main(["fit", str(runs), "--out", str(runs)]) == 2
    assert one_error(capsys) == (f"bayesmix fit: error: --out {runs}: the fit (netCDF) is written as .nc, so the "
                                 "file name must end in .nc (got '.csv')")
    assert runs.read_bytes() == EXAMPLE.read_bytes()


def test_an_output_that_is_an_input_is_refused(tmp_path):
    fit = tmp_path / "fit.nc"
    fit.write_bytes(b"x")
    with pytest.raises(OutputError, match=r"^--out .*fit.nc is also an input of this command \(.*fit.nc\); writing "
                                          "there would destroy it: choose another file$"):
        check_output(tmp_path / "." / "fit.nc", suffixes=(".nc",), inputs=[fit])
    link = tmp_path / "link.nc"
    link.symlink_to(fit)
    with pytest.raises(OutputError, match="is also an input"):
        check_output(link, suffixes=(".nc",), inputs=[fit])


def test_an_unwritable_destination_fails_before_the_fit(tmp_path, capsys):
    assert main(["fit", str(EXAMPLE), "--out", "/proc/bayesmix/fit.nc"]) == 2
    assert one_error(capsys) == ("bayesmix fit: error: --out /proc/bayesmix/fit.nc: cannot write in /proc "
                                 "(No such file or directory)")
    under_file = tmp_path / "f.txt"
    under_file.write_text("x")
    assert main(["report", str(tmp_path / "none.nc"), "--out", str(under_file / "r.html")]) == 2
    assert one_error(capsys) == f"bayesmix report: error: --out {under_file / 'r.html'}: {under_file} is not a folder"


def test_a_failed_atomic_write_leaves_the_old_file_and_no_tmp(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_write(path) as fh:
        fh.write(b"half")
        raise RuntimeError("boom")
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]


def test_train_does_not_claim_rows_are_in_an_out_it_could_not_write(tmp_path, monkeypatch, capsys):
    from bayesmix.proxy import sweeps
    from bayesmix.proxy.cli import main as train_main

    def unwritable(path, rows, runs=None):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(sweeps, "merge_into", unwritable)
    out = tmp_path / "runs.csv"
    args = ["train", "--mixture", "code=1", "--name", "c", "--out", str(out), "--steps", "8", "--plan-steps", "20",
            "--batch-size", "4", "--seq-len", "32", "--checkpoints", "2", "--eval-tokens", "256", "--threads", "1",
            "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    assert train_main(args) == 1
    err = capsys.readouterr().err
    assert err.strip() == (f"bayesmix train: could not write {out} (Permission denied); the finished runs' rows are "
                           f"in {tmp_path / 'runs.csv.work'}")
    assert "finished run(s) are in" not in err


# ----------------------------------------------------------------------------- 2. escaped report


def test_report_escapes_run_domain_eval_and_baseline_names(tmp_path):
    from bayesmix.report import build as rp
    from bayesmix.report import document as rd
    from bayesmix.report import html as rh

    rng = np.random.default_rng(0)
    names = [PAYLOAD, "second", "third"]
    domain = f"d{PAYLOAD}"
    import xarray as xr

    draws = xr.DataArray(rng.normal([3.0, 3.1, 3.2], 0.02, (200, 3)), dims=("draw", "point"),
                         coords={"mixture": ("point", names), f"mix.{domain}": ("point", [0.5, 0.2, 0.1]),
                                 "mix.web": ("point", [0.5, 0.8, 0.9])})
    ranking = rp.rank(rp.risk_table(draws, "third"), "mean")
    per_eval = pd.DataFrame([(m, e, 3.0, 2.9, 3.1) for m in names for e in [PAYLOAD, "overall"]],
                            columns=["mixture", "eval", "mean", "lower", "upper"])
    diagnostics = pd.DataFrame([{"part": PAYLOAD, "rhat_max": 1.2, "divergences": 0, "ok": False,
                                 "problems": PAYLOAD}])
    report = rd.Report(title=PAYLOAD, baseline="third", ranking=ranking, diagnostics=diagnostics, per_eval=per_eval,
                       target=PAYLOAD, settings={PAYLOAD: PAYLOAD}, caveat=PAYLOAD,
                       multiplier=pd.DataFrame({"mixture": [PAYLOAD], "median": [1.5], "lower": [1.1], "upper": [2.0]}),
                       suggestions=pd.DataFrame({f"mix.{domain}": [0.5], "mix.web": [0.5], PAYLOAD: [PAYLOAD]}),
                       data_summary=pd.DataFrame({"what": [PAYLOAD], "value": [PAYLOAD]}))
    text = rh.render_html(report)
    assert "<script" not in text.lower()
    assert text.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 8
    # the baseline itself as a payload, shown in the "vs baseline (...)" card (confidence 0: the
    # first row is recommended although it does not beat the baseline, so the card is drawn)
    ranking = rp.rank(rp.risk_table(draws, PAYLOAD), "mean").iloc[::-1].reset_index(drop=True)
    text = rh.render_html(rd.Report(title="t", baseline=PAYLOAD, ranking=ranking, diagnostics=diagnostics,
                                    confidence=0.0))
    assert "<script" not in text.lower() and "vs baseline (&lt;script&gt;alert(1)&lt;/script&gt;)" in text


# ----------------------------------------------------------------------------- 3. workers and locks


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_killed_train_leaves_no_worker_running(tmp_path):
    from bad_inputs import orphans_after_kill

    workers, orphans = orphans_after_kill(tmp_path)
    assert len(workers) >= 2 and orphans == [], "pool workers outlived the killed parent"


def test_a_run_folder_with_a_live_writer_is_refused_and_a_stale_lock_taken_over(tmp_path):
    from bayesmix.proxy.train import RunConflictError, RunDirectory, prepare_run, make_config, train_run

    cache = tmp_path / "cache"
    prepared = prepare_run({"code": 1}, "100k", make_config(None, **{k: v for k, v in TINY.items()
                                                                     if k != "progress"}),
                           name="c", cache_dir=cache)
    with RunDirectory(tmp_path / "w", prepared).lock():
        with pytest.raises(RunConflictError, match=rf"^run 'c@100k' in {tmp_path / 'w'} is being trained by process "
                                                   rf"{os.getpid()}; wait for it to finish or stop it$"):
            train_run({"code": 1}, "100k", name="c", workdir=tmp_path / "w", cache_dir=cache, **TINY)
    (tmp_path / "w" / "c@100k" / ".lock").write_text("999999999")  # left by a dead process
    rows = train_run({"code": 1}, "100k", name="c", workdir=tmp_path / "w", cache_dir=cache, **TINY)
    assert set(rows["run"]) == {"c@100k"}


# ----------------------------------------------------------------------------- 4. domain names


@pytest.mark.parametrize("column, message", [
    ("mix.a/b", "column 'mix.a/b': the domain name 'a/b' is not allowed; domain names become netCDF variable and "
                "file names, so they may hold only letters, digits and _ . + - (no spaces, slashes or other "
                "punctuation) and start with a letter, digit or _"),
    ("mix.", "column 'mix.' has no domain name after 'mix.'"),
    ("mix. web ", "column 'mix. web ': the domain name ' web ' has leading or trailing spaces and would be the same "
                  "domain as column 'mix.web'; remove them"),
    ("mix.paper ", "column 'mix.paper ': the domain name 'paper ' has leading or trailing spaces; remove them"),
])
def test_unsafe_domain_names_are_rejected_at_validation(column, message):
    runs = pd.read_csv(EXAMPLE).rename(columns={"mix.papers": column})
    with pytest.raises(RunTableError) as info:
        validate_runs(runs)
    assert str(info.value) == message


# ----------------------------------------------------------------------------- 5. foreign fit files


@pytest.mark.parametrize("command", [["predict", "FIT", "--steps", "10"], ["suggest", "FIT"],
                                     ["report", "FIT", "--out", "r.html"]])
def test_foreign_fit_files_give_one_line(command, tmp_path, capsys):
    import xarray as xr

    files = {"random.nc": lambda p: p.write_bytes(os.urandom(300)),
             "table.nc": lambda p: p.write_bytes(EXAMPLE.read_bytes()),
             "plain.nc": lambda p: xr.Dataset({"x": ("i", [1.0])}).to_netcdf(p)}
    for name, make in files.items():
        path = tmp_path / name
        make(path)
        argv = [str(path) if a == "FIT" else str(tmp_path / a) if a == "r.html" else a for a in command]
        assert main(argv) == 2
        line = one_error(capsys)
        if name == "plain.nc":
            assert line == (f"bayesmix {command[0]}: error: {path} is not a bayesmix fit: it holds no posterior "
                            "(groups: none)")
        else:
            assert line.startswith(f"bayesmix {command[0]}: error: {path} is not a bayesmix fit: not a readable "
                                   "netCDF file (")


# ----------------------------------------------------------------------------- 6. silent garbage


def test_a_header_only_mixtures_file_is_an_error(tmp_path):
    mixtures = tmp_path / "m.csv"
    mixtures.write_text("mixture,web,code,books,papers\n")
    from bayesmix.data.table import read_rows

    with pytest.raises(RunTableError, match=rf"^{mixtures}: the mixtures table has no rows \(only a header\)$"):
        read_rows(mixtures, "mixtures table")


def test_a_domain_that_is_0_in_every_run_is_named_in_a_warning():
    from bayesmix.inference.fit import warn_absent_domains

    runs = pd.read_csv(EXAMPLE)
    runs = validate_runs(runs.assign(**{"mix.web": runs["mix.web"] + runs["mix.papers"], "mix.papers": 0.0}))
    with pytest.warns(UserWarning, match=r"^domain\(s\) \['papers'\] are 0 in every run: the data say nothing about "
                                         r"them, so their coefficients come from the prior alone"):
        warn_absent_domains(runs)


def _idata(y: np.ndarray, mean: np.ndarray, sd: float, seed: int = 0) -> az.InferenceData:
    """Hand-built posterior: every draw predicts ``mean`` (plus a little spread) with noise ``sd``."""
    rng = np.random.default_rng(seed)
    mu = mean + rng.normal(0, sd / 10, (1, 400, len(y)))
    log_lik = -0.5 * ((y - mu) / sd) ** 2 - np.log(sd * np.sqrt(2 * np.pi))
    return az.from_dict(log_likelihood={"obs": log_lik}, posterior_predictive={"obs": mu + rng.normal(0, sd, mu.shape)},
                        observed_data={"obs": y})


def test_loo_r2_is_near_1_for_a_law_that_fits_and_at_most_0_for_one_that_explains_nothing():
    from bayesmix.inference.diagnostics import adequacy_problems, loo_r2

    rng = np.random.default_rng(1)
    signal_ = np.linspace(2.5, 3.5, 20)
    y = signal_ + rng.normal(0, 0.01, 20)
    groups = ["web"] * 20
    good = loo_r2(_idata(y, signal_, 0.01), groups)
    assert good["web"] > 0.95 and adequacy_problems(good) == ()
    noise = 3.0 + rng.normal(0, 0.05, 20)
    wrong = loo_r2(_idata(noise, signal_ * 0 + noise.mean() + rng.normal(0, 0.05, 20), 0.05), groups)
    assert wrong["web"] <= 0
    assert adequacy_problems(wrong) == (
        f"the law explains less than a constant for eval domain(s) ['web']: held-out (PSIS-LOO) R^2 web "
        f"{wrong['web']:.2f} <= 0, so the losses do not follow the mixture as the law says; do not trust its "
        "recommendation",)


@pytest.mark.slow
def test_a_law_fitted_to_unrelated_losses_is_flagged_in_diagnostics_and_report(tmp_path):
    from bayesmix.report import build as rp
    from bayesmix.report import html as rh
    from bayesmix.inference.fit import fit, load_fit

    runs = pd.read_csv(EXAMPLE)
    runs["loss"] = 3.0 + np.random.default_rng(0).normal(0, 0.05, len(runs))  # unrelated to the mixture
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit(runs, "mix", seed=0, n_starts=4,
                     sampler=dict(num_chains=1, num_warmup=150, num_samples=150, progress_bar=False))
    flagged = [p for p in result.diagnostics.problems if p.startswith("the law explains less than a constant")]
    assert flagged and not result.diagnostics.ok
    again = load_fit(result.save(tmp_path / "fit.nc"))
    assert flagged[0] in again.diagnostics.problems
    text = rh.render_html(rp.report_from_fit(again, n_random=20, seed=0))
    assert "diagnostics-warning" in text and "Not a confident recommendation:</b> the law explains less" in text


# ----------------------------------------------------------------------------- 7. clear errors


def test_clear_errors_for_draws_evals_priors_and_undecodable_files(tmp_path, capsys):
    assert main(["suggest", str(tmp_path / "none.nc"), "--max-draws", "0"]) == 2
    assert one_error(capsys) == "bayesmix suggest: error: --max-draws must be at least 1, got 0"
    out = str(tmp_path / "f.nc")
    assert main(["fit", str(EXAMPLE), "--evals", "klingon", "--out", out]) == 2
    assert one_error(capsys) == ("bayesmix fit: error: law 'mix': unknown eval domain(s) ['klingon']; the table has "
                                 "['code', 'papers', 'web']")
    assert main(["fit", str(EXAMPLE), "--prior", "noise_scale=-1", "--out", out]) == 2
    assert one_error(capsys) == ("bayesmix fit: error: prior 'noise_scale' must be positive and finite (it is a "
                                 "scale); got -1.0")
    png = tmp_path / "runs.csv"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(16))
    assert main(["fit", str(png), "--out", out]) == 2
    assert one_error(capsys) == (f"bayesmix fit: error: {png} is not UTF-8 text (undecodable byte at position 0); "
                                 "save it as UTF-8")


# ----------------------------------------------------------------------------- 8. run names


@pytest.mark.parametrize("run", ["..", ".", "..."])
def test_train_run_refuses_a_name_that_escapes_the_workdir(run, tmp_path):
    from bayesmix.proxy.train import train_run

    work = tmp_path / "w"
    with pytest.raises(ValueError, match=rf"^run name '{run}' would write outside the work folder; give a name with "
                                         "a letter or digit$"):
        train_run({"code": 1}, "100k", run=run, workdir=work, cache_dir=tmp_path / "cache", **TINY)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
