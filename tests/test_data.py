"""Run table: round trips, every validation error, wide <-> long, RegMix."""

import warnings

import numpy as np
import pandas as pd
import pytest

from bayesmix.data import (
    RunTableError,
    domains,
    from_wide,
    load_regmix,
    mixture_columns,
    read_runs,
    require_levels,
    run_mixtures,
    run_sizes,
    to_wide,
    validate_runs,
    write_runs,
)


def table(changes=None) -> pd.DataFrame:
    rows = []
    for run, (size, mix) in {"a": (100, (0.5, 0.5)), "b": (200, (0.2, 0.8))}.items():
        for step in (10, 20, 30):
            for ev in ("web", "code"):
                rows.append({"run": run, "size": size, "step": step, "tokens": step * 64, "eval": ev,
                             "loss": 3.0 - 0.01 * step + (0.1 if ev == "code" else 0.0),
                             "mix.web": mix[0], "mix.code": mix[1]})
    df = pd.DataFrame(rows).astype(object)
    for (i, col), value in (changes or {}).items():
        df.loc[i, col] = value
    return df.infer_objects()


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_round_trip_every_format(tmp_path, suffix):
    df = validate_runs(table())
    path = write_runs(df, tmp_path / f"runs{suffix}")
    back = read_runs(path)
    pd.testing.assert_frame_equal(back, df)
    assert not list(tmp_path.glob("*.tmp"))  # atomic write leaves no temporary file


def test_schema_helpers():
    df = validate_runs(table())
    assert mixture_columns(df) == ["mix.web", "mix.code"]
    assert domains(df) == ["web", "code"]
    assert run_mixtures(df).loc["b"].tolist() == [0.2, 0.8]
    assert run_sizes(df).to_dict() == {"a": 100, "b": 200}
    assert df["size"].dtype == np.int64 and df["loss"].dtype == np.float64


@pytest.mark.parametrize(
    "df, message",
    [
        (table().drop(columns="loss"), r"lacks required column\(s\) \['loss'\]"),
        (table().drop(columns=["mix.web", "mix.code"]), "no mixture columns"),
        (table({(0, "mix.web"): 1.5, (0, "mix.code"): -0.5}), r"must lie in \[0, 1\].*mix.web.*run\(s\) a"),
        (table({(6, "mix.web"): 0.3}), r"changes between rows of run\(s\) b|sum to 1.*b: 1.1000"),
        (table({(2, "loss"): np.nan}), r"finite and positive; bad rows.*a@20/web=nan"),
        (table({(3, "loss"): -1.0}), r"a@20/code=-1.0"),
        (table({(4, "loss"): np.inf}), r"a@30/web=inf"),
        (table({(0, "size"): 150}), r"size changes between rows of run\(s\) a"),
        (table({(0, "step"): 0}), r"'step' must hold positive integers.*run\(s\) a"),
        (table({(0, "size"): 2.5}), r"'size' must hold positive integers"),
        (table({(0, "loss"): "high"}), r"column 'loss' has non-numeric values in run\(s\) a"),
        (pd.concat([table(), table().iloc[[0]]]), r"duplicate \(run, step, eval\) rows: \(a, 10, web\)"),
        (table().iloc[0:0], "empty"),
    ],
)
def test_every_validation_error_names_the_culprit(df, message):
    with pytest.raises(RunTableError, match=message):
        validate_runs(df)


def test_rows_far_from_summing_to_one_are_an_error():
    df = table()
    df.loc[df["run"] == "b", "mix.code"] = 0.7
    with pytest.raises(RunTableError, match=r"sum to 1 \(tolerance 0.01\); run\(s\) sum to b: 0.9000"):
        validate_runs(df)


def test_rows_close_to_one_are_renormalised_with_one_warning():
    df = table()
    df.loc[df["run"] == "b", "mix.code"] = 0.805
    with pytest.warns(UserWarning, match=r"renormalised the proportions of 1 run\(s\)") as record:
        out = validate_runs(df)
    assert len(record) == 1
    np.testing.assert_allclose(out[["mix.web", "mix.code"]].sum(axis=1), 1.0)


def test_float_round_off_is_renormalised_silently():
    df = table()
    df.loc[df["run"] == "a", "mix.web"] = 0.5 + 1e-9
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        validate_runs(df)


def test_nothing_is_dropped():
    df = table()
    assert len(validate_runs(df)) == len(df)


def test_wide_long_round_trip():
    wide = pd.DataFrame({"id": [1, 2, 3], "p_web": [0.5, 0.2, 1.0], "p_code": [0.5, 0.8, 0.0],
                         "loss_web": [3.0, 3.2, 2.9], "loss_code": [2.0, 1.8, 2.5], "n": [100, 100, 200]})
    long = from_wide(wide, mixture_columns={"p_web": "web", "p_code": "code"},
                     loss_columns={"loss_web": "web", "loss_code": "code"}, run_column="id", size="n", step=1000)
    assert len(long) == 6 and set(long["eval"]) == {"web", "code"}
    assert long.loc[(long["run"] == "2") & (long["eval"] == "code"), "loss"].item() == 1.8
    back = to_wide(long)
    assert back.set_index("run").loc["3", "web"] == 2.9
    assert back.set_index("run").loc["1", "size"] == 100


def test_from_wide_errors():
    wide = pd.DataFrame({"p": [1.0], "l": [2.0]})
    with pytest.raises(RunTableError, match=r"lacks column\(s\) q"):
        from_wide(wide, mixture_columns=["q"], loss_columns=["l"])
    with pytest.raises(RunTableError, match="lacks the size column 'n'"):
        from_wide(wide, mixture_columns=["p"], loss_columns=["l"], size="n")
    with pytest.raises(RunTableError, match="needs a column on= present in both"):
        from_wide(wide, mixture_columns=["p"], loss_columns=["l"], losses=wide, on="id")


def test_require_levels_messages():
    df = validate_runs(table())
    require_levels(df, law="step", checkpoints=3, mixtures=2)
    with pytest.raises(RunTableError, match="law 'mix' needs at least 5 distinct mixtures, the table has 2"):
        require_levels(df, law="mix", mixtures=5)
    with pytest.raises(RunTableError, match="law 'size' needs at least 3 distinct sizes, the table has 2"):
        require_levels(df, law="size", sizes=3)
    with pytest.raises(RunTableError, match=r"needs at least 4 checkpoints per run; run\(s\) with fewer: a \(3\)"):
        require_levels(df, law="step", checkpoints=4)


def test_unsupported_suffix_and_missing_file(tmp_path):
    with pytest.raises(RunTableError, match="unsupported file type '.xlsx'"):
        read_runs(tmp_path / "runs.xlsx")
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_runs(tmp_path / "runs.csv")
    with pytest.raises(RunTableError, match="unsupported file type '.pkl'"):
        write_runs(table(), tmp_path / "runs.pkl")


def test_load_regmix(anchors_dir):
    with pytest.warns(UserWarning, match="rounded to 3 decimals"):
        runs = load_regmix(anchors_dir / "regmix")
    assert runs["run"].nunique() == 768
    assert len(domains(runs)) == 17 and runs["eval"].nunique() == 13
    assert "pile_cc" in set(runs["eval"])
    np.testing.assert_allclose(runs[mixture_columns(runs)].sum(axis=1), 1.0)
    with pytest.warns(UserWarning):
        test = load_regmix(anchors_dir / "regmix", split="test")
    assert test["run"].str.startswith("test-").all() and test["run"].nunique() == 256
    with pytest.raises(RunTableError, match="split must be one of"):
        load_regmix(anchors_dir / "regmix", split="valid")
