"""Run table: round trips, every validation error, wide <-> long, RegMix."""

import os
import warnings

import numpy as np
import pandas as pd
import pytest

from bayesmix.data.table import (
    MIX_PREFIX,
    RunTableError,
    domains,
    from_wide,
    load_regmix,
    mixture_columns,
    read_runs,
    read_table,
    run_mixtures,
    run_sizes,
    to_wide,
    validate_runs,
    write_runs,
    write_table,
)

FORMATS = [".csv", ".parquet", ".pq", ".jsonl", ".json"]


def table(changes=None) -> pd.DataFrame:
    """Two runs (a: size 100, b: size 200) x steps 10, 20, 30 x evals web, code; rows in that order."""
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


def awkward() -> pd.DataFrame:
    """Text that looks like numbers or missing values, and floats that need every digit."""
    return pd.DataFrame({
        "run": ["007", "007", "1e3", "1e3"], "size": [10, 10, 20, 20], "step": [5, 5, 5, 5],
        "eval": ["NA", "null", "NA", "null"],
        "loss": [1 / 3, 7.0255866050720215, 2.0000000000000004, 5.169477939605713],
        "mix.x": [0.1, 0.1, 1 / 3, 1 / 3], "mix.y": [0.9, 0.9, 2 / 3, 2 / 3],
    })


# --------------------------------------------------------------------------- files


@pytest.mark.parametrize("suffix", FORMATS)
def test_round_trip_every_format(tmp_path, suffix):
    df = validate_runs(table())
    path = write_runs(df, tmp_path / f"runs{suffix}")
    assert path == tmp_path / f"runs{suffix}"
    pd.testing.assert_frame_equal(read_runs(path), df, check_exact=True)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # atomic write leaves no temporary file


@pytest.mark.parametrize("suffix", FORMATS)
def test_round_trip_keeps_text_and_every_float_digit(tmp_path, suffix):
    df = validate_runs(awkward())
    back = read_runs(write_runs(df, tmp_path / f"runs{suffix}"))
    pd.testing.assert_frame_equal(back, df, check_exact=True)
    assert set(back["run"]) == {"007", "1e3"} and set(back["eval"]) == {"NA", "null"}


@pytest.mark.parametrize("suffix", FORMATS)
def test_round_trip_with_some_tokens_unknown(tmp_path, suffix):
    df = table()
    df["tokens"] = df["tokens"].astype(float)
    df.loc[df["run"] == "b", "tokens"] = np.nan
    df = validate_runs(df)
    assert df["tokens"].dtype == np.float64
    pd.testing.assert_frame_equal(read_runs(write_runs(df, tmp_path / f"runs{suffix}")), df, check_exact=True)


def test_written_files_get_usual_permissions_and_keep_existing_ones(tmp_path):
    reference = tmp_path / "reference"
    reference.write_text("")
    path = write_runs(table(), tmp_path / "runs.csv")
    assert os.stat(path).st_mode & 0o777 == os.stat(reference).st_mode & 0o777
    os.chmod(path, 0o640)
    write_runs(table(), path)
    assert os.stat(path).st_mode & 0o777 == 0o640


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = write_runs(table(), tmp_path / "runs.parquet")
    before = path.read_bytes()
    with pytest.raises(ValueError):  # pyarrow cannot store a bare object
        write_table(pd.DataFrame({"x": [object()]}), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["runs.parquet"]


def test_hand_written_csv_is_read_as_text_keys(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_text("run,size,step,eval,loss,mix.web,mix.code\n1,10,100,NA,2.5,0.25,0.75\n2,10,100,NA,,0.5,0.5\n")
    raw = read_table(path)
    assert raw["run"].tolist() == ["1", "2"] and raw["eval"].tolist() == ["NA", "NA"]
    assert np.isnan(raw["loss"].iloc[1])  # an empty number is missing...
    with pytest.raises(RunTableError, match=r"bad rows \(run@step/eval=loss\): 2@100/NA=nan"):
        read_runs(path)  # ...and reported, not dropped


def test_unsupported_suffix_missing_file_and_broken_files(tmp_path):
    with pytest.raises(RunTableError, match="unsupported file type '.xlsx'"):
        read_runs(tmp_path / "runs.xlsx")
    with pytest.raises(RunTableError, match="unsupported file type '.pkl'"):
        write_runs(table(), tmp_path / "runs.pkl")
    with pytest.raises(RunTableError, match="unsupported file type '.pickle'"):
        read_table(tmp_path / "runs.pickle")
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_runs(tmp_path / "runs.csv")
    (tmp_path / "bad.jsonl").write_text('{"run": "a"}\n{"run": \n')
    with pytest.raises(RunTableError, match=r"bad.jsonl, line 2: not valid JSON"):
        read_table(tmp_path / "bad.jsonl")
    (tmp_path / "list.jsonl").write_text("[1, 2]\n")
    with pytest.raises(RunTableError, match="one JSON object per line"):
        read_table(tmp_path / "list.jsonl")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(RunTableError, match="is empty"):
        read_runs(tmp_path / "empty.csv")


# --------------------------------------------------------------------------- schema and validation


def test_schema_helpers():
    df = validate_runs(table())
    assert MIX_PREFIX == "mix."
    assert mixture_columns(df) == ["mix.web", "mix.code"]
    assert domains(df) == ["web", "code"]
    mixtures = run_mixtures(df)
    assert mixtures.index.name == "run" and list(mixtures.columns) == ["web", "code"]
    assert mixtures.loc["b"].tolist() == [0.2, 0.8]
    assert run_sizes(df).to_dict() == {"a": 100, "b": 200}


def test_clean_copy_has_schema_dtypes_order_and_sorting():
    raw = table().sample(frac=1.0, random_state=0)
    raw["note"] = "x"
    raw["size"] = raw["size"].astype(float)
    before = raw.copy()
    df = validate_runs(raw)
    pd.testing.assert_frame_equal(raw, before)  # the input is not touched
    assert list(df.columns) == ["run", "size", "step", "tokens", "eval", "loss", "mix.web", "mix.code", "note"]
    assert df[["size", "step", "tokens"]].dtypes.tolist() == [np.int64] * 3
    assert df["loss"].dtype == np.float64 and df["mix.web"].dtype == np.float64
    assert pd.api.types.is_string_dtype(df["run"]) and pd.api.types.is_string_dtype(df["eval"])
    keys = list(df[["run", "size", "step", "eval"]].itertuples(index=False, name=None))
    assert keys == sorted(keys) and len(df) == len(raw)  # sorted, nothing dropped
    assert df.index.equals(pd.RangeIndex(len(df)))


@pytest.mark.parametrize(
    "df, message",
    [
        (table().drop(columns="loss"), r"lacks required column\(s\) \['loss'\]"),
        (table().drop(columns=["run", "step"]), r"lacks required column\(s\) \['run', 'step'\]"),
        (table().drop(columns=["mix.web", "mix.code"]), "no mixture columns"),
        (table({(0, "mix.web"): 1.5, (0, "mix.code"): -0.5}),
         r"must lie in \[0, 1\]; bad values in column\(s\) mix.web, mix.code of run\(s\) a$"),
        (table({(7, "mix.code"): np.nan}), r"must lie in \[0, 1\]; bad values in column\(s\) mix.code of run\(s\) b"),
        (table({(6, "mix.web"): 0.3, (6, "mix.code"): 0.7}),
         r"the mixture changes between rows of run\(s\) b \(column\(s\) mix.web, mix.code\)"),
        (table({(0, "size"): 150}), r"the size changes between rows of run\(s\) a$"),
        (table({(2, "loss"): np.nan}), r"finite and positive; bad rows \(run@step/eval=loss\): a@20/web=nan$"),
        (table({(3, "loss"): -1.0, (11, "loss"): 0.0}), r"a@20/code=-1.0, b@30/code=0.0$"),
        (table({(4, "loss"): np.inf}), r"a@30/web=inf"),
        (table({(0, "step"): 0}), r"'step' must hold positive integers; bad values 0.0 in run\(s\) a"),
        (table({(7, "step"): -3}), r"'step' must hold positive integers; bad values -3.0 in run\(s\) b"),
        (table({(0, "step"): 12.5}), r"'step' must hold positive integers; bad values 12.5 in run\(s\) a"),
        (table({(i, "size"): 2.5 for i in range(6)}), r"'size' must hold positive integers; bad values 2.5 in run\(s\) a"),
        (table({(i, "size"): -100 for i in range(6, 12)}), r"'size' must hold positive integers.* run\(s\) b"),
        (table({(0, "size"): np.nan}), r"'size' must hold positive integers; bad values nan in run\(s\) a"),
        (table({(0, "tokens"): 1.5}), r"'tokens' must hold positive integers; bad values 1.5 in run\(s\) a"),
        (table({(0, "loss"): "high"}), r"column 'loss' has non-numeric values in run\(s\) a: 'high'"),
        (table({(0, "run"): None}), r"column 'run' is missing or empty in 1 row\(s\) \(row positions 0\)"),
        (table({(5, "eval"): " "}), r"column 'eval' is missing or empty in 1 row\(s\) \(row positions 5\)"),
        (pd.concat([table(), table().iloc[[0, 9]]]), r"duplicate \(run, step, eval\) rows: \(a, 10, web\), \(b, 20, code\)$"),
        (table().iloc[0:0], "the run table is empty"),
    ],
)
def test_every_validation_error_names_the_culprit(df, message):
    with pytest.raises(RunTableError, match=message):
        validate_runs(df)


def test_not_a_dataframe():
    with pytest.raises(RunTableError, match="must be a pandas DataFrame, got dict"):
        validate_runs({"run": ["a"]})


def test_rows_far_from_summing_to_one_name_the_runs_and_sums():
    df = table()
    df.loc[df["run"] == "b", "mix.code"] = 0.7
    df.loc[df["run"] == "a", "mix.code"] = 0.52
    with pytest.raises(RunTableError, match=r"sum to 1 \(tolerance 0.01\); run\(s\) sum to a: 1.0200, b: 0.9000$"):
        validate_runs(df)


def test_tolerance_is_a_parameter():
    df = table()
    df.loc[df["run"] == "b", "mix.code"] = 0.805
    with pytest.raises(RunTableError, match=r"tolerance 0.001\); run\(s\) sum to b: 1.0050"):
        validate_runs(df, tol=1e-3)


def test_rows_close_to_one_are_renormalised_with_one_warning():
    df = table()
    df.loc[df["run"] == "a", "mix.web"] = 0.498
    df.loc[df["run"] == "b", "mix.code"] = 0.805
    with pytest.warns(UserWarning) as record:
        out = validate_runs(df)
    assert len(record) == 1
    assert str(record[0].message) == ("renormalised the proportions of 2 run(s) that summed to 1 within 0.01 "
                                      "(largest deviation 0.005)")
    assert record[0].filename == __file__  # points at the caller, not at bayesmix
    np.testing.assert_allclose(out[mixture_columns(out)].sum(axis=1), 1.0, rtol=0, atol=1e-15)
    np.testing.assert_allclose(run_mixtures(out).loc["b"], [0.2 / 1.005, 0.805 / 1.005])
    assert len(out) == len(df)


def test_float_round_off_is_silent_and_validation_is_idempotent():
    df = table()
    df.loc[df["run"] == "a", "mix.web"] = 0.5 + 1e-9
    df.loc[df["run"] == "b", ["mix.web", "mix.code"]] = [0.1 + 0.2, 0.7]  # sums to 1.0000000000000002
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        once = validate_runs(df)
        twice = validate_runs(once)
    pd.testing.assert_frame_equal(twice, once, check_exact=True)


# --------------------------------------------------------------------------- wide <-> long


def wide_table() -> pd.DataFrame:
    return pd.DataFrame({"id": [1, 2, 3], "p_web": [0.5, 0.2, 1.0], "p_code": [0.5, 0.8, 0.0],
                         "loss_web": [3.0, 3.2, 2.9], "loss_code": [2.0, 1.8, 2.5], "n": [100, 100, 200]})


def test_from_wide_maps_names_and_takes_constants_or_columns():
    long = from_wide(wide_table(), mixture_columns={"p_web": "web", "p_code": "code"},
                     loss_columns={"loss_web": "web", "loss_code": "code"}, run_column="id", size="n", step=1000)
    assert len(long) == 6 and set(long["eval"]) == {"web", "code"} and "tokens" not in long
    assert mixture_columns(long) == ["mix.web", "mix.code"]
    assert long.loc[(long["run"] == "2") & (long["eval"] == "code"), "loss"].item() == 1.8
    assert run_sizes(long).to_dict() == {"1": 100, "2": 100, "3": 200} and set(long["step"]) == {1000}
    listed = from_wide(wide_table(), mixture_columns=["p_web", "p_code"], loss_columns=["loss_web"], tokens=64)
    assert domains(listed) == ["p_web", "p_code"] and set(listed["eval"]) == {"loss_web"}
    assert listed["run"].tolist() == ["run0", "run1", "run2"] and set(listed["tokens"]) == {64}
    assert set(listed["size"]) == {1} and set(listed["step"]) == {1}


def test_wide_long_round_trips():
    long = validate_runs(table())
    wide = to_wide(long)
    assert list(wide.columns) == ["run", "size", "step", "tokens", "mix.web", "mix.code", "code", "web"]
    assert len(wide) == 6 and wide.set_index(["run", "step"]).loc[("b", 20), "code"] == long.query(
        "run == 'b' and step == 20 and eval == 'code'")["loss"].item()
    back = from_wide(wide, mixture_columns=mixture_columns(long), loss_columns=["web", "code"], run_column="run",
                     size="size", step="step", tokens="tokens")
    pd.testing.assert_frame_equal(back, long, check_exact=True)
    again = from_wide(wide_table(), mixture_columns={"p_web": "web", "p_code": "code"},
                      loss_columns={"loss_web": "web", "loss_code": "code"}, run_column="id", size="n", step=1000)
    flat = to_wide(again)
    assert flat[["web", "code"]].to_numpy().tolist() == wide_table()[["loss_web", "loss_code"]].to_numpy().tolist()
    assert flat[["mix.web", "mix.code"]].to_numpy().tolist() == wide_table()[["p_web", "p_code"]].to_numpy().tolist()


def test_to_wide_at_one_step_and_without_dropping_rows():
    long = validate_runs(table())
    at = to_wide(long, step=20)
    assert at["run"].tolist() == ["a", "b"] and set(at["step"]) == {20}
    with pytest.raises(RunTableError, match=r"no rows at step 25; the table has steps 10, 20, 30"):
        to_wide(long, step=25)
    partial = table()
    partial["tokens"] = partial["tokens"].astype(float)
    partial.loc[partial["run"] == "b", "tokens"] = np.nan
    partial = validate_runs(partial.drop(index=[1]))  # a@10 lacks the code eval
    flat = to_wide(partial)
    assert len(flat) == 6 and flat["tokens"].isna().sum() == 3
    assert np.isnan(flat.set_index(["run", "step"]).loc[("a", 10), "code"])
    clash = validate_runs(table().replace({"eval": {"web": "size"}}))
    with pytest.raises(RunTableError, match=r"eval name\(s\) size clash"):
        to_wide(clash)


def test_from_wide_joins_losses_one_to_one():
    wide = wide_table()
    mixes, losses = wide[["id", "p_web", "p_code"]], wide[["id", "loss_web", "loss_code"]].iloc[::-1]
    kwargs = {"mixture_columns": {"p_web": "web", "p_code": "code"}, "loss_columns": {"loss_web": "web"}}
    long = from_wide(mixes, losses=losses, on="id", **kwargs)
    assert long["run"].tolist() == ["1", "2", "3"]  # run ids default to the join key
    assert long.set_index("run").loc["3", "loss"] == 2.9
    with pytest.raises(RunTableError, match=r"do not match on 'id': without losses 1; without a mixture 9"):
        from_wide(mixes, losses=losses.replace({"id": {1: 9}}), on="id", **kwargs)
    with pytest.raises(RunTableError, match=r"the loss table repeats id= value\(s\) 2"):
        from_wide(mixes, losses=losses.replace({"id": {1: 2}}), on="id", **kwargs)
    with pytest.raises(RunTableError, match=r"both tables have column\(s\) p_web besides on='id'"):
        from_wide(mixes, losses=losses.assign(p_web=0.0), on="id", **kwargs)
    with pytest.raises(RunTableError, match="needs a column on= present in both"):
        from_wide(mixes, losses=losses, on="index", **kwargs)


def test_from_wide_errors():
    wide = pd.DataFrame({"p": [1.0], "q": [0.0], "l": [2.0]})
    with pytest.raises(RunTableError, match=r"lacks column\(s\) z"):
        from_wide(wide, mixture_columns=["z"], loss_columns=["l"])
    with pytest.raises(RunTableError, match="lacks the size column 'n'"):
        from_wide(wide, mixture_columns=["p"], loss_columns=["l"], size="n")
    with pytest.raises(RunTableError, match="lacks the run column 'id'"):
        from_wide(wide, mixture_columns=["p"], loss_columns=["l"], run_column="id")
    with pytest.raises(RunTableError, match=r"mixture_columns maps several columns to the same name\(s\) web"):
        from_wide(wide, mixture_columns={"p": "web", "q": "web"}, loss_columns=["l"])
    with pytest.raises(RunTableError, match="loss_columns must be a list of columns or a dict"):
        from_wide(wide, mixture_columns=["p"], loss_columns="l")
    with pytest.raises(RunTableError, match=r"sum to 1.*run0: 0.5000"):
        from_wide(wide.assign(p=0.5), mixture_columns=["p", "q"], loss_columns=["l"])


# --------------------------------------------------------------------------- RegMix


def test_load_regmix(anchors_dir):
    with pytest.warns(UserWarning) as record:
        runs = load_regmix(anchors_dir / "regmix")
    assert len(record) == 1
    assert str(record[0].message).startswith(
        "RegMix proportions are rounded to 3 decimals in the files: renormalised the proportions of ")
    assert runs["run"].nunique() == 768 and len(runs) == 768 * 13
    assert len(domains(runs)) == 17 and runs["eval"].nunique() == 13
    assert "pile_cc" in set(runs["eval"]) and "pile_cc" in domains(runs)
    assert {"nih_exporter", "philpapers", "enron_emails", "europarl"} <= set(domains(runs)) - set(runs["eval"])
    assert set(runs["size"]) == {1_000_000} and set(runs["step"]) == {1000}
    np.testing.assert_allclose(runs[mixture_columns(runs)].sum(axis=1), 1.0, rtol=0, atol=1e-12)
    first = runs.set_index(["run", "eval"]).loc[("train-1", "pile_cc")]
    assert first["loss"] == 5.169477939605713 and first["mix.pile_cc"] == pytest.approx(0.787)


def test_load_regmix_splits(anchors_dir):
    with pytest.warns(UserWarning, match="rounded to 3 decimals"):
        test = load_regmix(anchors_dir / "regmix", split="test", size=5, step=7)
    assert test["run"].str.startswith("test-").all() and test["run"].nunique() == 256
    assert set(test["size"]) == {5} and set(test["step"]) == {7}
    with pytest.warns(UserWarning, match="rounded to 3 decimals"):
        train = load_regmix(anchors_dir / "regmix", split="train")
    assert train["run"].str.startswith("train-").all() and train["run"].nunique() == 512
    with pytest.raises(RunTableError, match="split must be one of"):
        load_regmix(anchors_dir / "regmix", split="valid")


def test_load_regmix_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_mixture_1m.csv"):
        load_regmix(tmp_path)
