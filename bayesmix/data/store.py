"""A tree of settings, arrays and tables saved to a folder without pickle.

    save_tree(obj, "fit", format="bayesmix-pipeline/1")    # fit/tree.json, fit/arrays.nc, fit/tables/*.parquet
    obj = load_tree("fit", format="bayesmix-pipeline/1", types={"Stage": Stage, ...})

The object is walked as a tree. Arrays go to one netCDF file (``arrays.nc``, a variable per
array, named by its place in the tree); tables to Parquet files; everything else to JSON,
where a dataclass is written as ``{"__type__": name, "fields": ...}``. Loading builds only
the classes it is given, so a folder from elsewhere cannot make this code run anything.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from bayesmix.data.io import atomic_folder, check_output_folder


class StoreError(ValueError):
    """A folder that is not a saved tree of the expected format, or one holding unknown types."""


@dataclasses.dataclass
class _Sink:
    arrays: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = dataclasses.field(default_factory=dict)

    def key(self, path: str) -> str:
        return f"a{len(self.arrays) + len(self.tables)}_{path}"[:120]


def encode(value, sink: _Sink, path: str = "root"):
    """``value`` as JSON, with arrays and tables moved into ``sink`` (referenced by key)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float, np.integer, np.floating, np.bool_)):
        return value.item() if isinstance(value, np.generic) else value
    if isinstance(value, np.ndarray):
        key = sink.key(path)
        sink.arrays[key] = value
        return {"__array__": key}
    if isinstance(value, (pd.DataFrame, pd.Series)):
        key = sink.key(path)
        frame = value.to_frame() if isinstance(value, pd.Series) else value
        sink.tables[key] = frame
        return {"__table__": key, "series": isinstance(value, pd.Series)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: encode(getattr(value, f.name), sink, f"{path}.{f.name}") for f in dataclasses.fields(value)
                  if f.init}
        return {"__type__": type(value).__name__, "fields": fields}
    if isinstance(value, dict):
        return {"__dict__": [[encode(k, sink, path), encode(v, sink, f"{path}.{k}")] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        items = [encode(v, sink, f"{path}.{i}") for i, v in enumerate(value)]
        return {"__tuple__": items} if isinstance(value, tuple) else items
    raise TypeError(f"cannot save a {type(value).__name__} at {path}")


def decode(node, arrays: xr.Dataset, tables: Path, types: dict[str, type]):
    """Inverse of :func:`encode`; only the dataclasses in ``types`` (name -> class) are built."""
    if isinstance(node, list):
        return [decode(v, arrays, tables, types) for v in node]
    if not isinstance(node, dict):
        return node
    if "__array__" in node:
        return _array(arrays[node["__array__"]])
    if "__table__" in node:
        frame = pd.read_parquet(tables / f"{node['__table__']}.parquet")
        return frame.iloc[:, 0] if node["series"] else frame
    if "__tuple__" in node:
        return tuple(decode(v, arrays, tables, types) for v in node["__tuple__"])
    if "__dict__" in node:
        return {_hashable(decode(k, arrays, tables, types)): decode(v, arrays, tables, types) for k, v in node["__dict__"]}
    if "__type__" in node:
        cls = types.get(node["__type__"])
        if cls is None:
            raise StoreError(f"unknown saved type {node['__type__']!r}")
        return cls(**{k: decode(v, arrays, tables, types) for k, v in node["fields"].items()})
    raise StoreError(f"unreadable node with keys {sorted(node)}")


def _hashable(key):
    return tuple(key) if isinstance(key, list) else key


def _array(variable: xr.DataArray) -> np.ndarray:
    values = variable.to_numpy()
    kind = variable.attrs.get("kind")
    if kind == "bool":
        return values.astype(bool)
    if kind == "str":
        return values.astype(str)
    if kind == "object":
        return values.astype(object)
    return values


def _dataset(arrays: dict[str, np.ndarray]) -> xr.Dataset:
    variables = {}
    for key, value in arrays.items():
        dims = [f"{key}_{i}" for i in range(value.ndim)]
        kind = {"b": "bool", "U": "str", "O": "object", "S": "str"}.get(value.dtype.kind)
        data = value.astype(np.int8) if kind == "bool" else value.astype(str) if kind else value
        variables[key] = xr.Variable(dims, data, attrs={"kind": kind} if kind else {})
    return xr.Dataset(variables)


def check_result_folder(path, *, inputs=(), option: str = "--out") -> Path:
    """Check before any work that ``path`` can take a saved result: a new or empty folder, or
    one holding a saved result (replaced); never a file, an input or another folder."""
    path = check_output_folder(path, inputs=inputs, option=option)
    if path.is_dir() and any(path.iterdir()) and not is_saved_tree(path):
        raise StoreError(f"{option} {path} is a folder that holds something else than a saved result: "
                         "choose a new folder")
    return path


def save_tree(obj, path, *, format: str) -> Path:
    """Write ``obj`` to the folder ``path`` (replaced as a whole, atomically); returns the path."""
    path = Path(path)
    if path.exists() and not (path.is_dir() and (is_saved_tree(path) or not any(path.iterdir()))):
        raise StoreError(f"{path} exists and is not a saved result: choose a new folder")
    sink = _Sink()
    tree = {"format": format, "tree": encode(obj, sink)}
    with atomic_folder(path) as tmp:
        (tmp / "tables").mkdir()
        (tmp / "tree.json").write_text(json.dumps(tree, indent=1), encoding="utf-8")
        _dataset(sink.arrays).to_netcdf(tmp / "arrays.nc", engine="h5netcdf")
        for key, frame in sink.tables.items():
            frame.to_parquet(tmp / "tables" / f"{key}.parquet")
    return path


def load_tree(path, *, format: str, types: dict[str, type], what: str = "saved result"):
    """The object saved in the folder ``path`` by :func:`save_tree` in ``format``."""
    path = Path(path)
    meta = path / "tree.json"
    if not path.is_dir() or not meta.is_file():
        raise StoreError(f"{path} is not a {what} (a folder with tree.json)")
    tree = json.loads(meta.read_text(encoding="utf-8"))
    if tree.get("format") != format:
        raise StoreError(f"{path}: format {tree.get('format')!r}; this version reads {format!r}")
    with xr.open_dataset(path / "arrays.nc", engine="h5netcdf") as arrays:
        return decode(tree["tree"], arrays.load(), path / "tables", types)


def is_saved_tree(path) -> bool:
    """Whether ``path`` is a folder written by :func:`save_tree`."""
    return (Path(path) / "tree.json").is_file()


__all__ = ["StoreError", "check_result_folder", "decode", "encode", "is_saved_tree", "load_tree", "save_tree"]
