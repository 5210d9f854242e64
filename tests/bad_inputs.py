"""The bad-input cases shared by ``tests/test_bad_inputs.py`` and ``benchmarks/bench_bad_inputs.py``.

Each case is (id, command line, the message the one-line error must hold).
Paths in a command line are names in a folder made by :func:`make_files`;
``FIT`` is replaced by a real saved fit when the case needs one (those cases
are listed in ``NEEDS_FIT``). Every case must fail with exit status 2 and one
line on stderr before any sampling, and leave every input file unchanged.
"""

from __future__ import annotations

import hashlib
import io
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "bayesmix" / "data" / "bundled" / "example_runs.csv"
FAST = ["--chains", "1", "--warmup", "5", "--draws", "5", "--no-progress"]


def _runs() -> pd.DataFrame:
    return pd.read_csv(EXAMPLE, dtype={"run": str, "eval": str})


def _with(**changes):
    def build():
        df = _runs()
        for name, fn in changes.items():
            df = fn(df)
        return df
    return build


def _set(column, value, rows=slice(0, 1)):
    def fn(df):
        df = df.copy()
        df[column] = df[column].astype(object)
        df.loc[df.index[rows], column] = value
        return df
    return fn


def _rename(old, new):
    return lambda df: df.rename(columns={old: new})


def _drop(column):
    return lambda df: df.drop(columns=[column])


def _zero_domain(df):
    df = df.copy()
    df["mix.web"] = df["mix.web"] + df["mix.papers"]
    df["mix.papers"] = 0.0
    return df


TABLES = {
    "runs.csv": _runs,
    "neg_prop.csv": _with(a=_set("mix.web", -0.5)),
    "big_prop.csv": _with(a=_set("mix.web", 1.5)),
    "nan_prop.csv": _with(a=_set("mix.code", np.nan)),
    "sum_off.csv": _with(a=lambda df: df.assign(**{"mix.web": df["mix.web"] * 0.5})),
    "text_prop.csv": _with(a=_set("mix.books", "lots")),
    "nan_loss.csv": _with(a=_set("loss", np.nan)),
    "inf_loss.csv": _with(a=_set("loss", np.inf)),
    "neg_loss.csv": _with(a=_set("loss", -1.0)),
    "zero_loss.csv": _with(a=_set("loss", 0.0)),
    "text_loss.csv": _with(a=_set("loss", "high")),
    "dup_rows.csv": _with(a=lambda df: pd.concat([df, df.iloc[:1]], ignore_index=True)),
    "no_run.csv": _with(a=_drop("run")),
    "no_size.csv": _with(a=_drop("size")),
    "no_step.csv": _with(a=_drop("step")),
    "no_eval.csv": _with(a=_drop("eval")),
    "no_loss.csv": _with(a=_drop("loss")),
    "no_mix.csv": _with(a=lambda df: df.drop(columns=[c for c in df.columns if c.startswith("mix.")])),
    "frac_size.csv": _with(a=_set("size", 1.5)),
    "neg_size.csv": _with(a=_set("size", -10)),
    "text_size.csv": _with(a=_set("size", "big")),
    "zero_step.csv": _with(a=_set("step", 0)),
    "frac_step.csv": _with(a=_set("step", 2.5)),
    "empty_run.csv": _with(a=_set("run", "")),
    "empty_eval.csv": _with(a=_set("eval", "")),
    "mix_changes.csv": _with(a=lambda df: df.assign(**{
        "mix.web": np.where(df.index == 0, df["mix.web"] - 0.1, df["mix.web"]),
        "mix.code": np.where(df.index == 0, df["mix.code"] + 0.1, df["mix.code"])})),
    "size_changes.csv": _with(a=_set("size", 40000000)),
    "slash_domain.csv": _with(a=_rename("mix.papers", "mix.a/b")),
    "empty_domain.csv": _with(a=_rename("mix.papers", "mix.")),
    "space_domain.csv": _with(a=_rename("mix.papers", "mix. web ")),
    "space_twin.csv": _with(a=_rename("mix.papers", "mix. web")),
    "colon_domain.csv": _with(a=_rename("mix.papers", "mix.pa:pers")),
    "few_mixtures.csv": _with(a=lambda df: df[df["run"].isin(sorted(df["run"].unique())[:3])]),
    "one_size_two_laws.csv": _runs,
    "zero_domain.csv": _with(a=_zero_domain),
}

TEXT_FILES = {
    "header_only.csv": "run,size,step,eval,loss,mix.web,mix.code\n",
    "empty.csv": "",
    "broken.csv": "run,size,step,eval,loss,mix.web\nr0,1,1,web,3.0,1.0\nr1,1,1,web,3.0,1.0,7,8\n",
    "broken.jsonl": '{"run": "r0", "size": 1}\nnot json\n',
    "list.jsonl": "[1, 2, 3]\n",
    "mix_header_only.csv": "mixture,web,code,books,papers\n",
    "mix_bad_sum.csv": "mixture,web,code,books,papers\nm,0.5,0.5,0.5,0\n",
    "mix_negative.csv": "mixture,web,code,books,papers\nm,1.5,-0.5,0,0\n",
    "mix_unknown.csv": "mixture,web,code,books,papers,klingon\nm,0.25,0.25,0.25,0,0.25\n",
    "mix_missing.csv": "mixture,web,code\nm,0.5,0.5\n",
    "mix_text.csv": "mixture,web,code,books,papers\nm,half,0.5,0,0\n",
    "train_mix_header.csv": "name,code,english\n",
    "train_mix_bad.csv": "name,code,english\nbad,0.5,0.2\n",
    "train_mix_unknown.csv": "name,code,web\nm,0.5,0.5\n",
    "train_mix.json": '{"a": {"code": 1.5, "english": -0.5}}',
    "train_mix_broken.json": '{"a": ',
    "train_mix.txt": "name,code\nm,1\n",
    "runs.txt": "run,size\n",
    "runs.xlsx": "PK",
    "notes.md": "# not a table\n",
}

BYTE_FILES = {
    "random.nc": bytes(np.random.default_rng(0).integers(0, 256, 512, dtype=np.uint8)),
    "latin1.csv": "run,size,step,eval,loss,mix.web\nr\xe9,1,1,web,3.0,1.0\n".encode("latin-1"),
    "png.csv": b"\x89PNG\r\n\x1a\n" + bytes(64),
    "random.parquet": bytes(np.random.default_rng(1).integers(0, 256, 256, dtype=np.uint8)),
    "latin1.json": '{"a": {"c\xf3de": 1}}'.encode("latin-1"),
}


def make_files(folder: Path) -> None:
    """Write every bad (and the good) input file into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, build in TABLES.items():
        build().to_csv(folder / name, index=False)
    for name, text in TEXT_FILES.items():
        (folder / name).write_text(text, encoding="utf-8")
    for name, data in BYTE_FILES.items():
        (folder / name).write_bytes(data)
    (folder / "table.nc").write_bytes((folder / "runs.csv").read_bytes())  # a CSV named .nc
    (folder / "a_folder").mkdir(exist_ok=True)
    (folder / "a_folder.nc").mkdir(exist_ok=True)
    (folder / "report.html").write_text("<html>old report</html>", encoding="utf-8")
    _plain_netcdf(folder / "plain.nc")


def _plain_netcdf(path: Path) -> None:
    import xarray as xr

    xr.Dataset({"loss": ("x", np.arange(3.0))}).to_netcdf(path)


def _fit_cases():
    bad = "--out /proc/bayesmix-out"
    return [
        # finding 1: outputs checked first (same file, suffix, unwritable, folder)
        ("fit-out-is-input", "fit runs.csv --out runs.csv", "must end in .nc"),
        ("fit-out-csv", "fit runs.csv --out o.csv", "the fit (netCDF) is written as .nc"),
        ("fit-out-no-suffix", "fit runs.csv --out fit", "must end in .nc (got 'no suffix')"),
        ("fit-out-under-file", "fit runs.csv --out runs.csv/x.nc", "is not a folder"),
        ("fit-out-unwritable", f"fit runs.csv {bad}.nc", "cannot write in /proc"),
        ("fit-out-folder", "fit runs.csv --out a_folder.nc", "is a folder"),
        ("fit-out-input-nc", "fit table.nc --out table.nc", "is also an input of this command"),
        ("report-out-is-fit", "report FIT --out FIT", "the report is written as .html"),
        ("report-out-is-input-html", "report FIT --out report.html --candidates report.html",
         "is also an input of this command"),
        ("report-out-nc", "report FIT --out r.nc", "must end in .html or .htm"),
        ("report-out-unwritable", f"report FIT {bad}.html", "cannot write in /proc"),
        ("report-out-under-file", "report FIT --out runs.csv/r.html", "is not a folder"),
        ("predict-out-is-mixtures", "predict FIT --mixtures mix_bad_sum.csv --out mix_bad_sum.csv",
         "is also an input of this command"),
        ("predict-out-nc", "predict FIT --steps 10 --out p.nc", "the table is written as"),
        ("predict-out-unwritable", f"predict FIT --steps 10 {bad}.csv", "cannot write in /proc"),
        ("predict-out-is-fit", "predict FIT --steps 10 --out FIT", "the table is written as"),
        ("suggest-out-is-fit", "suggest FIT --out FIT", "the table is written as"),
        ("suggest-out-unwritable", f"suggest FIT {bad}.csv", "cannot write in /proc"),
        ("suggest-out-is-pool", "suggest FIT --pool mix_bad_sum.csv --out mix_bad_sum.csv",
         "is also an input of this command"),
        ("compare-out-is-runs", "compare runs.csv --out runs.csv", "is also an input of this command"),
        ("compare-out-nc", "compare runs.csv --out r.nc", "the table is written as"),
        ("pipeline-predictions-is-runs", "pipeline runs.csv --predictions runs.csv", "is also an input of this command"),
        ("pipeline-out-is-a-file", "pipeline runs.csv --out runs.csv", "--out runs.csv is a file, not a folder"),
        ("pipeline-json-is-runs", "pipeline runs.csv --json runs.csv", "the summary is written as .json"),
        ("pipeline-json-unwritable", "pipeline runs.csv --json /proc/x.json", "cannot write in /proc"),
        ("demo-out-is-file", "demo --out runs.csv", "is a file, not a folder"),
        ("demo-out-unwritable", "demo --out /proc/bayesmix-demo", "cannot write in /proc"),
        ("train-out-nc", "train --mixture code=1 --out r.nc", "the run table is written as"),
        ("train-out-under-file", "train --mixture code=1 --out runs.csv/r.csv", "is not a folder"),
        ("train-out-proc", f"train --mixture code=1 {bad}.csv", "cannot write in /proc"),
        ("train-domain-is-out", "train --domain code=train_mix.txt --out train_mix.txt", "the run table is written"),
        # finding 4: domain names
        ("domain-slash", "fit slash_domain.csv --out f.nc", "the domain name 'a/b' is not allowed"),
        ("domain-empty", "fit empty_domain.csv --out f.nc", "column 'mix.' has no domain name after 'mix.'"),
        ("domain-spaces", "fit space_domain.csv --out f.nc", "has leading or trailing spaces"),
        ("domain-space-twin", "fit space_twin.csv --out f.nc", "would be the same domain as column 'mix.web'"),
        ("domain-colon", "fit colon_domain.csv --out f.nc", "the domain name 'pa:pers' is not allowed"),
        ("domain-slash-compare", "compare slash_domain.csv", "the domain name 'a/b' is not allowed"),
        ("domain-slash-pipeline", "pipeline slash_domain.csv", "the domain name 'a/b' is not allowed"),
        # finding 5: foreign fit files
        ("predict-random-bytes", "predict random.nc --steps 10", "random.nc is not a bayesmix fit"),
        ("predict-csv-as-nc", "predict table.nc --steps 10", "table.nc is not a bayesmix fit"),
        ("predict-plain-netcdf", "predict plain.nc --steps 10", "plain.nc is not a bayesmix fit: it holds no posterior"),
        ("suggest-random-bytes", "suggest random.nc", "random.nc is not a bayesmix fit"),
        ("suggest-csv-as-nc", "suggest table.nc", "table.nc is not a bayesmix fit"),
        ("suggest-plain-netcdf", "suggest plain.nc", "plain.nc is not a bayesmix fit: it holds no posterior"),
        ("report-random-bytes", "report random.nc --out r.html", "random.nc is not a bayesmix fit"),
        ("report-csv-as-nc", "report table.nc --out r.html", "table.nc is not a bayesmix fit"),
        ("report-plain-netcdf", "report plain.nc --out r.html", "plain.nc is not a bayesmix fit: it holds no posterior"),
        ("predict-fit-is-folder", "predict a_folder.nc --steps 10", "no fit at"),
        ("predict-missing-fit", "predict nowhere.nc --steps 10", "no fit at nowhere.nc"),
        # finding 6: header-only tables
        ("predict-header-only-mixtures", "predict FIT --mixtures mix_header_only.csv",
         "the mixtures table has no rows (only a header)"),
        ("fit-header-only", "fit header_only.csv --out f.nc", "the run table is empty"),
        ("suggest-header-only-pool", "suggest FIT --pool mix_header_only.csv", "the pool of mixtures has no rows"),
        ("report-header-only-candidates", "report FIT --out r.html --candidates mix_header_only.csv",
         "the candidates table has no rows"),
        ("pipeline-header-only-mixtures", "pipeline runs.csv --mixtures mix_header_only.csv",
         "the mixtures table has no rows"),
        ("train-header-only-mixtures", "train --mixtures train_mix_header.csv --out t.csv", "no mixtures in the file"),
        # finding 7: clear errors
        ("fit-latin1", "fit latin1.csv --out f.nc", "latin1.csv is not UTF-8 text"),
        ("fit-png", "fit png.csv --out f.nc", "png.csv is not UTF-8 text"),
        ("fit-random-parquet", "fit random.parquet --out f.nc", "random.parquet is not a readable parquet table"),
        ("compare-latin1", "compare latin1.csv", "latin1.csv is not UTF-8 text"),
        ("pipeline-latin1", "pipeline latin1.csv", "latin1.csv is not UTF-8 text"),
        ("predict-latin1-mixtures", "predict FIT --mixtures latin1.csv", "latin1.csv is not UTF-8 text"),
        ("train-latin1-mixtures", "train --mixtures latin1.csv --out t.csv", "latin1.csv is not UTF-8 text"),
        ("train-latin1-json", "train --mixtures latin1.json --out t.csv", "latin1.json is not UTF-8 text"),
        ("suggest-draws-0", "suggest FIT --max-draws 0", "--max-draws must be at least 1, got 0"),
        ("suggest-draws-negative", "suggest FIT --max-draws -3", "--max-draws must be at least 1, got -3"),
        ("fit-evals-klingon", "fit runs.csv --evals klingon --out f.nc",
         "unknown eval domain(s) ['klingon']; the table has ['code', 'papers', 'web']"),
        ("fit-evals-empty", "fit runs.csv --evals , --out f.nc", "unknown eval domain(s)"),
        ("compare-evals-klingon", "compare runs.csv --laws mix --evals klingon", "unknown eval domain(s) ['klingon']"),
        ("pipeline-evals-klingon", "pipeline runs.csv --evals klingon", "klingon"),
        ("prior-noise-negative", "fit runs.csv --prior noise_scale=-1 --out f.nc",
         "prior 'noise_scale' must be positive and finite (it is a scale); got -1.0"),
        ("prior-level-zero", "fit runs.csv --prior level_sd=0 --out f.nc", "prior 'level_sd' must be positive"),
        ("prior-tau-inf", "fit runs.csv --prior interaction_tau=inf --out f.nc", "prior 'interaction_tau' must be"),
        ("prior-loc-nan", "fit runs.csv --prior floor_logit_loc=nan --out f.nc", "prior 'floor_logit_loc' must be finite"),
        ("prior-df-negative", "fit runs.csv --prior student_df=-2 --out f.nc", "prior 'student_df' must be positive"),
        ("prior-unknown", "fit runs.csv --prior bogus=1 --out f.nc", "unknown prior name(s) ['bogus']"),
        ("prior-step-law-negative", "fit runs.csv --law step --prior exponent_log_sd=-1 --out f.nc",
         "prior 'exponent_log_sd' must be positive"),
    ]


def _already_passing():
    out = [
        ("fit-missing-file", "fit missing.csv --out f.nc", "no such file"),
        ("fit-unknown-law", "fit runs.csv --law cubic --out f.nc", "unknown law 'cubic'"),
        ("fit-txt", "fit runs.txt --out f.nc", "unsupported file type '.txt'"),
        ("fit-xlsx", "fit runs.xlsx --out f.nc", "unsupported file type '.xlsx'"),
        ("fit-md", "fit notes.md --out f.nc", "unsupported file type '.md'"),
        ("fit-empty-file", "fit empty.csv --out f.nc", "is empty (not even a header line)"),
        ("fit-broken-csv", "fit broken.csv --out f.nc", "broken.csv is not a readable csv table"),
        ("fit-broken-jsonl", "fit broken.jsonl --out f.nc", "line 2: not valid JSON"),
        ("fit-list-jsonl", "fit list.jsonl --out f.nc", "expected one JSON object per line"),
        ("fit-chains-0", "fit runs.csv --chains 0 --out f.nc", "--chains must be at least 1, got 0"),
        ("fit-draws-0", "fit runs.csv --draws 0 --out f.nc", "--draws must be at least 1, got 0"),
        ("fit-warmup-negative", "fit runs.csv --warmup -1 --out f.nc", "--warmup must be 0 or more, got -1"),
        ("fit-few-mixtures", "fit few_mixtures.csv --out f.nc" + " " + " ".join(FAST), "distinct mixtures"),
        ("fit-size-missing", "fit runs.csv --size 7 --out f.nc" + " " + " ".join(FAST), "no runs of size 7"),
        ("fit-weights-unknown", "fit runs.csv --weights klingon=1 --out f.nc" + " " + " ".join(FAST),
         "weights must name every eval domain"),
        ("fit-size-law-one-size", "fit one_size_two_laws.csv --law size --out f.nc" + " " + " ".join(FAST),
         "needs at least"),
        ("compare-unknown-law", "compare runs.csv --laws mix,cubic", "unknown law 'cubic'"),
        ("compare-missing", "compare missing.csv", "no such file"),
        ("compare-chains-0", "compare runs.csv --chains 0", "--chains must be at least 1"),
        ("compare-test-missing", "compare runs.csv --test missing.csv" + " " + " ".join(FAST), "no such file"),
        ("pipeline-missing", "pipeline missing.csv", "no such file"),
        ("pipeline-prob-0", "pipeline runs.csv --prob 0", "--prob must lie in (0, 1)"),
        ("pipeline-prob-1", "pipeline runs.csv --prob 1.5", "--prob must lie in (0, 1)"),
        ("pipeline-mixtures-missing", "pipeline runs.csv --mixtures missing.csv", "no such file"),
        ("predict-prob-0", "predict FIT --steps 10 --prob 0", "--prob must lie in (0, 1)"),
        ("predict-prob-2", "predict FIT --steps 10 --prob 2", "--prob must lie in (0, 1)"),
        ("predict-mixtures-missing", "predict FIT --mixtures missing.csv", "no such file"),
        ("predict-mixtures-txt", "predict FIT --mixtures notes.md", "unsupported file type '.md'"),
        ("predict-bad-sum", "predict FIT --mixtures mix_bad_sum.csv", "sum to"),
        ("predict-negative", "predict FIT --mixtures mix_negative.csv", "finite and non-negative"),
        ("predict-unknown-domain", "predict FIT --mixtures mix_unknown.csv", "unknown domain column(s) ['klingon']"),
        ("predict-missing-domain", "predict FIT --mixtures mix_missing.csv", "mixtures lack domain column(s)"),
        ("predict-steps-on-mix", "predict FIT --steps 10", "steps"),
        ("suggest-q-0", "suggest FIT --q 0", "--q must be at least 1, got 0"),
        ("suggest-steps-negative", "suggest FIT --steps -1", "--steps must be 0 or more"),
        ("suggest-prob-0", "suggest FIT --prob 0", "--prob must lie in (0, 1)"),
        ("suggest-tokens-alone", "suggest FIT --tokens web=1", "--tokens and --target-tokens go together"),
        ("suggest-target-tokens-0", "suggest FIT --tokens web=1 --target-tokens 0", "--target-tokens must be positive"),
        ("suggest-tokens-and-rmax", "suggest FIT --tokens web=1,code=1,books=1,papers=1 --target-tokens 1 "
         "--r-max web=0.5", "not both"),
        ("suggest-tokens-missing", "suggest FIT --tokens web=1 --target-tokens 2", "must name every domain"),
        ("suggest-rmax-unknown", "suggest FIT --r-max klingon=0.5", "klingon"),
        ("suggest-eval-unknown", "suggest FIT --eval klingon --steps 0 --max-draws 8", "klingon"),
        ("suggest-pool-missing", "suggest FIT --pool missing.csv", "no such file"),
        ("suggest-pool-bad-sum", "suggest FIT --pool mix_bad_sum.csv --steps 0 --max-draws 8", "sum to"),
        ("suggest-candidates-missing", "suggest FIT --candidates missing.csv", "no such file"),
        ("report-top-0", "report FIT --out r.html --top 0", "--top must be at least 1"),
        ("report-random-negative", "report FIT --out r.html --random -1", "--random must be non-negative"),
        ("report-prob-1", "report FIT --out r.html --prob 1", "--prob must lie in (0, 1)"),
        ("report-confidence-1", "report FIT --out r.html --confidence 1", "--confidence must lie in [0, 1)"),
        ("report-missing-fit", "report missing.nc --out r.html", "no fit at missing.nc"),
        ("report-baseline-unknown", "report FIT --out r.html --baseline nonesuch --random 5", "unknown baseline"),
        ("report-candidates-missing", "report FIT --out r.html --candidates missing.csv", "no such file"),
        ("report-candidates-bad-sum", "report FIT --out r.html --candidates mix_bad_sum.csv --random 5", "sum to"),
        ("report-suggestions-missing", "report FIT --out r.html --suggestions missing.csv", "no such file"),
        ("demo-live-negative", "demo --live -1", "--live must be 0 or more rounds"),
        ("demo-draws-1", "demo --n-draws 1", "--n-draws must be at least 2"),
        ("demo-q-0", "demo --q 0", "--q must be at least 1"),
        ("demo-workers-0", "demo --workers 0", "--workers must be at least 1"),
        ("demo-target-step-0", "demo --target-step 0", "--target-step must be at least 1"),
        ("demo-runs-missing", "demo --runs missing.csv --out d", "no such file"),
        ("demo-runs-bad", "demo --runs neg_prop.csv --out d", "proportions must lie in [0, 1]"),
        ("train-no-out", "train --mixture code=1", "--out is required"),
        ("train-no-mixture", "train --out t.csv", "give --mixtures FILE or --mixture"),
        ("train-unknown-domain", "train --mixture code=0.5,web=0.5 --out t.csv", "unknown domain(s) ['web']"),
        ("train-bad-sum", "train --mixture code=0.5 --out t.csv", "sum to 0.5, not 1"),
        ("train-negative", "train --mixture code=1.5,english=-0.5 --out t.csv", "must not be negative"),
        ("train-not-number", "train --mixture code=lots --out t.csv", "not a number"),
        ("train-no-equals", "train --mixture code --out t.csv", "expected DOMAIN=PROPORTION"),
        ("train-unknown-size", "train --mixture code=1 --sizes 9Q --out t.csv", "unknown model size '9Q'"),
        ("train-mixtures-missing", "train --mixtures none.csv --out t.csv", "mixtures file not found"),
        ("train-mixtures-bad", "train --mixtures train_mix_bad.csv --out t.csv", "sum to 0.7"),
        ("train-mixtures-unknown", "train --mixtures train_mix_unknown.csv --out t.csv", "unknown domain(s) ['web']"),
        ("train-mixtures-json-bad", "train --mixtures train_mix.json --out t.csv", "must not be negative"),
        ("train-mixtures-json-broken", "train --mixtures train_mix_broken.json --out t.csv", "not valid JSON"),
        ("train-mixtures-txt", "train --mixtures train_mix.txt --out t.csv", "unsupported mixtures file type '.txt'"),
        ("train-domain-no-equals", "train --mixture code=1 --domain x --out t.csv", "--domain expects NAME=PATH"),
        ("train-steps-0", "train --mixture code=1 --steps 0 --out t.csv", "steps"),
        ("train-plan-below-steps", "train --mixture code=1 --steps 50 --plan-steps 10 --out t.csv", "plan_steps"),
        ("train-batch-0", "train --mixture code=1 --batch-size 0 --out t.csv", "batch_size"),
        ("train-seq-0", "train --mixture code=1 --seq-len 0 --out t.csv", "seq_len"),
        ("train-lr-negative", "train --mixture code=1 --lr -1 --out t.csv", "lr"),
        ("train-workers-0", "train --mixture code=1 --workers 0 --out t.csv", "workers must be a positive integer"),
        ("train-evals-unknown", "train --mixture code=1 --evals klingon --out t.csv", "klingon"),
        ("train-corpus-and-domain", "train --mixture code=1 --corpus a_folder --domain x=y --out t.csv",
         "give either --corpus or --domain"),
        ("train-ray-address-bad-backend", "train --mixture code=1 --device tpu --out t.csv", "tpu"),
        ("train-out-other-corpus", "train --mixture code=1 --out runs.csv", "has mixture columns"),
    ]
    validation = [
        ("neg-prop", "neg_prop.csv", "proportions must lie in [0, 1]"),
        ("big-prop", "big_prop.csv", "proportions must lie in [0, 1]"),
        ("nan-prop", "nan_prop.csv", "proportions must lie in [0, 1]"),
        ("sum-off", "sum_off.csv", "proportions must sum to 1"),
        ("text-prop", "text_prop.csv", "non-numeric values"),
        ("nan-loss", "nan_loss.csv", "losses must be finite and positive"),
        ("inf-loss", "inf_loss.csv", "losses must be finite and positive"),
        ("neg-loss", "neg_loss.csv", "losses must be finite and positive"),
        ("zero-loss", "zero_loss.csv", "losses must be finite and positive"),
        ("text-loss", "text_loss.csv", "non-numeric values"),
        ("dup-rows", "dup_rows.csv", "duplicate (run, step, eval) rows"),
        ("no-run", "no_run.csv", "lacks required column(s) ['run']"),
        ("no-size", "no_size.csv", "lacks required column(s) ['size']"),
        ("no-step", "no_step.csv", "lacks required column(s) ['step']"),
        ("no-eval", "no_eval.csv", "lacks required column(s) ['eval']"),
        ("no-loss", "no_loss.csv", "lacks required column(s) ['loss']"),
        ("no-mix", "no_mix.csv", "no mixture columns"),
        ("frac-size", "frac_size.csv", "must hold positive integers"),
        ("neg-size", "neg_size.csv", "must hold positive integers"),
        ("text-size", "text_size.csv", "non-numeric values"),
        ("zero-step", "zero_step.csv", "must hold positive integers"),
        ("frac-step", "frac_step.csv", "must hold positive integers"),
        ("empty-run", "empty_run.csv", "column 'run' is missing or empty"),
        ("empty-eval", "empty_eval.csv", "column 'eval' is missing or empty"),
        ("mix-changes", "mix_changes.csv", "the mixture changes between rows"),
        ("size-changes", "size_changes.csv", "the size changes between rows"),
        ("header-only", "header_only.csv", "the run table is empty"),
        ("empty-file", "empty.csv", "is empty (not even a header line)"),
        ("latin1", "latin1.csv", "is not UTF-8 text"),
    ]
    for command in ("fit", "compare", "pipeline"):
        for key, name, message in validation:
            argv = f"{command} {name}" + (" --out f.nc" if command == "fit" else "")
            out.append((f"{command}-table-{key}", argv, message))
    for key, name, message in validation[:12]:
        out.append((f"demo-table-{key}", f"demo --runs {name} --out d", message))
    return out


CASES = _fit_cases() + _already_passing()
NEEDS_FIT = {case_id for case_id, argv, _ in CASES if "FIT" in argv.split()}
FAILING_BEFORE = {case_id for case_id, _, _ in _fit_cases()}  # the kinds of input the issue found failing


def file_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (relative path -> digest)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run_case(argv: str, folder: Path, fit_path: Path | None = None) -> tuple[int | None, str, str]:
    """Run ``bayesmix ARGV`` in-process with ``folder`` as the working folder.

    Returns (exit code, stdout, stderr); an exception that escapes the CLI is
    returned as exit code None with its traceback as stderr.
    """
    import os
    import traceback

    from bayesmix.cli import main

    words = [str(fit_path) if w == "FIT" and fit_path is not None else w for w in argv.split()]
    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    os.chdir(folder)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = main(words)
            except SystemExit as exc:  # argparse errors
                code = exc.code if isinstance(exc.code, int) else 2
    except Exception:  # noqa: BLE001 - a traceback is what the suite counts
        return None, out.getvalue(), err.getvalue() + traceback.format_exc()
    finally:
        os.chdir(here)
    return code, out.getvalue(), err.getvalue()


def error_lines(stderr: str) -> list[str]:
    """The lines of stderr that are not one-line warnings (``bayesmix: UserWarning: ...``)."""
    return [line for line in stderr.strip().splitlines()
            if line.strip() and not (line.startswith("bayesmix: ") and line.split(" ")[1].endswith("Warning:"))]


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (Linux /proc)."""
    found, todo = set(), [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*"):
            try:
                kids = {int(k) for k in (task / "children").read_text().split()}
            except OSError:
                continue
            todo += list(kids - found)
            found |= kids
    return found


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def orphans_after_kill(folder: Path, timeout: float = 240) -> tuple[list[int], list[int]]:
    """Start ``bayesmix train --workers 2`` on two tiny runs, ``kill -9`` it once both workers
    train, and return (the processes below it, those still running 30 s later)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    (folder / "m.json").write_text('{"a": {"code": 1}, "b": {"english": 1}}')
    cmd = [sys.executable, "-m", "bayesmix.cli", "train", "--mixtures", str(folder / "m.json"), "--sizes", "100k",
           "--steps", "100000", "--batch-size", "4", "--seq-len", "32", "--checkpoints", "3", "--eval-tokens", "256",
           "--threads", "1", "--workers", "2", "--cache-dir", str(folder / "cache"), "--no-progress",
           "--out", str(folder / "runs.csv")]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    locks = [folder / "runs.csv.work" / f"{name}@100k" / ".lock" for name in "ab"]
    deadline = time.time() + timeout
    while time.time() < deadline:  # until both workers hold their run's lock
        held = [p.read_text().strip() for p in locks if p.exists()]
        if len(held) == 2 and all(h and int(h) != proc.pid for h in held) or proc.poll() is not None:
            break
        time.sleep(0.5)
    workers = sorted(_descendants(proc.pid))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 30
    while time.time() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.2)
    return workers, [p for p in workers if _alive(p)]
