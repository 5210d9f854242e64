"""Saved trees (netCDF + Parquet + JSON, no pickle): exact round trips, refusals, nothing lost on failure."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from bayesmix.data.store import StoreError, check_result_folder, load_tree, save_tree


@dataclasses.dataclass(frozen=True)
class Inner:
    name: str
    values: np.ndarray


@dataclasses.dataclass
class Outer:
    inner: Inner
    table: pd.DataFrame
    series: pd.Series
    nested: dict
    pair: tuple
    items: list
    nothing: None = None


TYPES = {"Inner": Inner, "Outer": Outer}


def example() -> Outer:
    return Outer(
        inner=Inner("step", np.arange(6.0).reshape(2, 3)),
        table=pd.DataFrame({"run": ["a", "b"], "loss": [2.5, np.nan], "ok": [True, False]}),
        series=pd.Series([1.0, 2.0], name="sd"),
        nested={"bools": np.array([True, False, True]), "labels": np.array(["web", "code"]), 3: 0.5,
                ("a", 1): np.int64(7), "float": np.float32(1.5), "empty": np.zeros((0, 2))},
        pair=(1, "two", 3.0),
        items=[Inner("mix", np.array([1, 2], dtype=np.int32)), None, float("nan")],
    )


def test_a_tree_comes_back_exactly(tmp_path):
    save_tree(example(), tmp_path / "fit", format="test/1")
    back = load_tree(tmp_path / "fit", format="test/1", types=TYPES)
    want = example()
    assert isinstance(back, Outer) and isinstance(back.inner, Inner) and back.inner.name == "step"
    np.testing.assert_array_equal(back.inner.values, want.inner.values)
    pd.testing.assert_frame_equal(back.table, want.table)
    pd.testing.assert_series_equal(back.series, want.series)
    assert back.nested["bools"].dtype == bool and back.nested["bools"].tolist() == [True, False, True]
    assert back.nested["labels"].tolist() == ["web", "code"]
    assert back.nested[3] == 0.5 and back.nested[("a", 1)] == 7 and back.nested["float"] == 1.5
    assert back.nested["empty"].shape == (0, 2)
    assert back.pair == (1, "two", 3.0) and back.nothing is None
    assert back.items[0].values.dtype == np.int32 and back.items[1] is None and np.isnan(back.items[2])
    assert sorted(p.name for p in (tmp_path / "fit").iterdir()) == ["arrays.nc", "tables", "tree.json"]


def test_only_the_given_types_are_built(tmp_path):
    save_tree(example(), tmp_path / "fit", format="test/1")
    with pytest.raises(StoreError, match=r"^unknown saved type 'Outer'$"):
        load_tree(tmp_path / "fit", format="test/1", types={"Inner": Inner})


def test_bad_folders_are_refused_with_one_line(tmp_path):
    with pytest.raises(StoreError, match=r"nowhere is not a saved result \(a folder with tree.json\)$"):
        load_tree(tmp_path / "nowhere", format="test/1", types=TYPES)
    save_tree(example(), tmp_path / "fit", format="test/1")
    with pytest.raises(StoreError, match=r"format 'test/1'; this version reads 'test/2'$"):
        load_tree(tmp_path / "fit", format="test/2", types=TYPES)
    tree = json.loads((tmp_path / "fit" / "tree.json").read_text())
    tree["tree"] = {"odd": 1}
    (tmp_path / "fit" / "tree.json").write_text(json.dumps(tree))
    with pytest.raises(StoreError, match=r"^unreadable node with keys \['odd'\]$"):
        load_tree(tmp_path / "fit", format="test/1", types=TYPES)
    with pytest.raises(TypeError, match=r"cannot save a set at root.nested.s"):
        save_tree(dataclasses.replace(example(), nested={"s": {1, 2}}), tmp_path / "other", format="test/1")


def test_a_folder_of_something_else_is_never_replaced(tmp_path):
    keep = tmp_path / "notes"
    keep.mkdir()
    (keep / "mine.txt").write_text("do not delete")
    with pytest.raises(StoreError, match="holds something else than a saved result: choose a new folder"):
        check_result_folder(keep)
    with pytest.raises(StoreError, match="exists and is not a saved result: choose a new folder"):
        save_tree(example(), keep, format="test/1")
    assert (keep / "mine.txt").read_text() == "do not delete"
    (tmp_path / "file.nc").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        check_result_folder(tmp_path / "file.nc")


def test_a_failed_save_leaves_the_old_result_whole(tmp_path):
    path = tmp_path / "fit"
    save_tree(example(), path, format="test/1")
    before = sorted(p.name for p in path.rglob("*"))
    with pytest.raises(TypeError):  # refused while walking the tree
        save_tree(dataclasses.replace(example(), pair=(object(),)), path, format="test/1")
    mixed = pd.DataFrame({"bad": [1, "a"]})  # fails while the tables are written, inside the new folder
    with pytest.raises(Exception, match="bad"):
        save_tree(dataclasses.replace(example(), table=mixed), path, format="test/1")
    assert sorted(p.name for p in path.rglob("*")) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
    assert isinstance(load_tree(path, format="test/1", types=TYPES), Outer)
