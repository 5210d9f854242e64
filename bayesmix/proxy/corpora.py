"""Training domains: the bundled corpus and loaders for user corpora.

A corpus is a set of named domains. Each domain's documents come from one
source, which may be

* a directory of text files (read recursively, sorted, each file one document;
  ``.jsonl``/``.parquet`` files inside are read as tables),
* a JSON-lines file with a text column (``.jsonl``, ``.jsonl.gz``, ``.jsonl.xz``),
* a Parquet file with a text column,
* a single text file (optionally ``.gz``/``.xz``/``.bz2``).

A domain either comes pre-split (a directory holding exactly a ``train*`` and a
``valid*`` entry, each of the kinds above) or is split after tokenisation into
blocks of which a fixed, evenly spread share is held out for validation.

``load_corpus(path)`` reads a directory whose entries are the domains (named by
the entry without suffixes); ``load_corpus({"web": path, ...})`` names them
explicitly; ``load_corpus()`` is the bundled corpus.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

BUNDLED_DIR = Path(__file__).resolve().parents[1] / "data" / "bundled" / "corpus"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")
COMPRESSIONS = {".gz": gzip.open, ".xz": lzma.open, ".bz2": bz2.open}
TABLE_SUFFIXES = (".jsonl", ".parquet", ".pq")


class CorpusError(ValueError):
    """A corpus or domain could not be read; the message names the path."""


@dataclass(frozen=True)
class Domain:
    """One training/evaluation domain.

    ``valid`` empty means: split the tokenised ``train`` stream, holding out
    ``valid_fraction`` of it in evenly spread blocks. ``digest`` (optional)
    identifies the content for the token cache instead of file stats.
    """

    name: str
    train: tuple[Path, ...]
    valid: tuple[Path, ...] = ()
    text_column: str = "text"
    valid_fraction: float = 0.05
    digest: str | None = None

    @property
    def presplit(self) -> bool:
        return bool(self.valid)


@dataclass(frozen=True)
class Corpus:
    """An ordered set of domains (the order fixes the ``mix.*`` columns)."""

    domains: tuple[Domain, ...]
    label: str = "custom"
    info: Mapping = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        if not self.domains:
            raise CorpusError("a corpus needs at least one domain")
        names = [d.name for d in self.domains]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise CorpusError(f"duplicate domain name(s) {dup}")

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.domains]

    def domain(self, name: str) -> Domain:
        for d in self.domains:
            if d.name == name:
                return d
        raise CorpusError(f"unknown domain {name!r}; the corpus has {self.names}")

    def fingerprint(self) -> str:
        """Identifies the content (paths, sizes, modification times or digests) for caching."""
        parts = []
        for d in self.domains:
            if d.digest:
                files = [d.digest]
            else:
                files = [_stat_key(p) for p in (*d.train, *d.valid)]
            parts.append([d.name, d.text_column, d.valid_fraction, len(d.train), files])
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _stat_key(path: Path) -> list:
    path = Path(path)
    if path.is_dir():
        return [str(path.resolve()), [_stat_key(p) for p in _files_in(path)]]
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


def _files_in(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(directory).parts))


def _strip_suffixes(path: Path) -> tuple[str, str, str | None]:
    """(stem, table suffix or '', compression suffix or None) of a file name."""
    name = path.name
    compression = None
    for suffix in COMPRESSIONS:
        if name.endswith(suffix):
            compression, name = suffix, name[: -len(suffix)]
            break
    for suffix in TABLE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)], suffix, compression
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return stem, "", compression


def _open_binary(path: Path):
    _, _, compression = _strip_suffixes(path)
    return COMPRESSIONS[compression](path, "rb") if compression else open(path, "rb")


def _read_jsonl(path: Path, text_column: str) -> Iterator[str]:
    with _open_binary(path) as raw, io.TextIOWrapper(raw, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CorpusError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(record, dict) or text_column not in record:
                raise CorpusError(f"{path}:{lineno}: record has no text column {text_column!r}")
            text = record[text_column]
            if not isinstance(text, str):
                raise CorpusError(f"{path}:{lineno}: column {text_column!r} is {type(text).__name__}, not text")
            yield text


def _read_parquet(path: Path, text_column: str) -> Iterator[str]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for unreadable files
        raise CorpusError(f"{path}: not a readable Parquet file ({exc})") from None
    if text_column not in pf.schema_arrow.names:
        raise CorpusError(f"{path}: no text column {text_column!r}; columns are {pf.schema_arrow.names}")
    for batch in pf.iter_batches(columns=[text_column]):
        for text in batch.column(0).to_pylist():
            if text is not None:
                yield str(text)


def _read_text(path: Path) -> Iterator[str]:
    with _open_binary(path) as fh:
        yield fh.read().decode("utf-8", errors="replace")


def read_documents(path: str | Path, text_column: str = "text") -> Iterator[str]:
    """Documents (strings) of one source: a directory, a JSONL/Parquet table or a text file."""
    path = Path(path)
    if not path.exists():
        raise CorpusError(f"no such file or directory: {path}")
    if path.is_dir():
        files = _files_in(path)
        if not files:
            raise CorpusError(f"directory {path} holds no files")
        for f in files:
            yield from read_documents(f, text_column)
        return
    _, suffix, _ = _strip_suffixes(path)
    if suffix == ".jsonl":
        yield from _read_jsonl(path, text_column)
    elif suffix in (".parquet", ".pq"):
        yield from _read_parquet(path, text_column)
    else:
        yield from _read_text(path)


def domain_documents(domain: Domain, split: str = "train") -> Iterator[str]:
    """Documents of a domain's ``train`` or ``valid`` source (``valid`` only when pre-split)."""
    if split not in ("train", "valid"):
        raise ValueError(f"split must be 'train' or 'valid', got {split!r}")
    for path in domain.train if split == "train" else domain.valid:
        yield from read_documents(path, domain.text_column)


def _check_name(name: str, where) -> str:
    if not NAME_PATTERN.match(name):
        raise CorpusError(f"domain name {name!r} (from {where}) must use only letters, digits, '_' and '-'")
    return name


def domain_from_path(name: str, path: str | Path, *, text_column: str = "text",
                     valid_fraction: float = 0.05) -> Domain:
    """A domain from a directory, table or text file (pre-split if it holds train*/valid*)."""
    path = Path(path)
    if not path.exists():
        raise CorpusError(f"domain {name!r}: no such file or directory: {path}")
    if not 0 < valid_fraction < 1:
        raise CorpusError(f"valid_fraction must lie in (0, 1), got {valid_fraction}")
    _check_name(name, path)
    if path.is_dir():
        entries = [p for p in sorted(path.iterdir()) if not p.name.startswith(".")]
        stems = {_strip_suffixes(p)[0] if p.is_file() else p.name: p for p in entries}
        if len(entries) == 2 and set(stems) == {"train", "valid"}:
            return Domain(name, (stems["train"],), (stems["valid"],), text_column, valid_fraction)
    return Domain(name, (path,), (), text_column, valid_fraction)


def corpus_from_directory(directory: str | Path, *, text_column: str = "text",
                          valid_fraction: float = 0.05) -> Corpus:
    """Every non-hidden entry of ``directory`` is a domain named by its stem."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CorpusError(f"corpus directory not found: {directory}")
    entries = [p for p in sorted(directory.iterdir()) if not p.name.startswith(".")]
    if not entries:
        raise CorpusError(f"corpus directory {directory} is empty: add one folder or file per domain")
    domains = []
    for p in entries:
        name = p.name if p.is_dir() else _strip_suffixes(p)[0]
        domains.append(domain_from_path(name, p, text_column=text_column, valid_fraction=valid_fraction))
    return Corpus(tuple(domains), label=str(directory))


def bundled_corpus() -> Corpus:
    """The corpus shipped with the package (see ``bayesmix/data/bundled/corpus/PROVENANCE.md``)."""
    manifest_path = BUNDLED_DIR / "manifest.json"
    if not manifest_path.is_file():
        raise CorpusError(f"the bundled corpus is missing ({manifest_path}); reinstall bayesmix")
    manifest = json.loads(manifest_path.read_text())
    domains = []
    for name, info in manifest["domains"].items():
        folder = BUNDLED_DIR / name
        digest = hashlib.sha256((info["train"]["sha256"] + info["valid"]["sha256"]).encode()).hexdigest()
        domains.append(Domain(name, (folder / info["train"]["file"],), (folder / info["valid"]["file"],),
                              manifest.get("text_column", "text"), digest=digest))
    return Corpus(tuple(domains), label="bundled", info=manifest)


def load_corpus(source=None, *, text_column: str = "text", valid_fraction: float = 0.05) -> Corpus:
    """A corpus from ``None``/``"bundled"``, a :class:`Corpus`, a directory, or a mapping name -> path."""
    if source is None or (isinstance(source, str) and source == "bundled"):
        return bundled_corpus()
    if isinstance(source, Corpus):
        return source
    if isinstance(source, Mapping):
        if not source:
            raise CorpusError("a corpus mapping needs at least one domain name -> path")
        return Corpus(tuple(domain_from_path(str(n), p, text_column=text_column, valid_fraction=valid_fraction)
                            for n, p in source.items()), label="custom")
    if isinstance(source, (str, Path)):
        return corpus_from_directory(source, text_column=text_column, valid_fraction=valid_fraction)
    raise CorpusError(f"cannot make a corpus from {type(source).__name__}; give a directory, a mapping or 'bundled'")
