"""Byte-level tokenisation and the memory-mapped per-domain token cache.

Text is encoded as UTF-8 bytes (vocabulary 256, nothing to download); each
document ends with byte 0xFF, which never occurs in UTF-8, as the
end-of-document token. The cache holds one flat array per (domain, split) in
``<cache_dir>/<tokenizer>-<corpus fingerprint>/``, written once (atomically,
so parallel workers may race safely) and memory-mapped read-only afterwards.

Domains that are not pre-split are cut into blocks after tokenisation (of
``SPLIT_BLOCK`` tokens, smaller for small domains so that there are at least
ten validation blocks, but never below ``MIN_SPLIT_BLOCK``); every
``round(1 / valid_fraction)``-th block is validation.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from bayesmix.data.io import atomic_write
from bayesmix.proxy.corpora import Corpus, CorpusError, Domain, domain_documents

SPLIT_BLOCK = 8192
MIN_SPLIT_BLOCK = 512
CACHE_VERSION = 1


class Tokenizer(Protocol):
    name: str
    vocab_size: int
    eod: int
    dtype: type

    def encode(self, text: str) -> np.ndarray: ...


@dataclass(frozen=True)
class ByteTokenizer:
    """UTF-8 bytes as tokens; 0xFF marks the end of a document."""

    name: str = "bytes"
    vocab_size: int = 256
    eod: int = 0xFF
    dtype: type = np.uint8

    def encode(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)

    def decode(self, tokens) -> str:
        data = bytes(int(t) for t in tokens if int(t) != self.eod)
        return data.decode("utf-8", errors="replace")


def default_cache_dir() -> Path:
    """``$BAYESMIX_CACHE``, else ``$XDG_CACHE_HOME/bayesmix``, else ``~/.cache/bayesmix``."""
    if os.environ.get("BAYESMIX_CACHE"):
        return Path(os.environ["BAYESMIX_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "bayesmix"


def _encode_documents(docs, tokenizer: Tokenizer) -> np.ndarray:
    parts, eod = [], np.array([tokenizer.eod], dtype=tokenizer.dtype)
    for text in docs:
        parts.append(np.asarray(tokenizer.encode(text), dtype=tokenizer.dtype))
        parts.append(eod)
    if not parts:
        return np.zeros(0, dtype=tokenizer.dtype)
    return np.concatenate(parts)


def split_blocks(tokens: np.ndarray, valid_fraction: float, block: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Split a token stream into (train, valid): every k-th block of ``block`` tokens is validation."""
    every = max(2, int(round(1 / valid_fraction)))
    if block is None:
        block = int(np.clip(len(tokens) // (10 * every), MIN_SPLIT_BLOCK, SPLIT_BLOCK))
    n_blocks = -(-len(tokens) // block)
    if n_blocks < every:
        raise CorpusError(
            f"too little text to hold out {valid_fraction:.0%} for validation: {len(tokens)} tokens make "
            f"{n_blocks} block(s) of {block}, at least {every} are needed ({every * block} tokens); "
            "add text or give the domain a train/valid pair")
    is_valid = np.zeros(n_blocks, dtype=bool)
    is_valid[every - 1::every] = True
    mask = np.repeat(is_valid, block)[: len(tokens)]
    return tokens[~mask], tokens[mask]


def _write_atomic(array: np.ndarray, path: Path) -> None:
    with atomic_write(path) as fh:
        fh.write(np.ascontiguousarray(array).tobytes())


class TokenCache:
    """Memory-mapped token arrays of every domain's train and valid split."""

    def __init__(self, root: Path, corpus: Corpus, tokenizer: Tokenizer):
        self.root = Path(root)
        self.corpus = corpus
        self.tokenizer = tokenizer
        self._maps: dict[tuple[str, str], np.ndarray] = {}

    @property
    def names(self) -> list[str]:
        return self.corpus.names

    def path(self, domain: str, split: str) -> Path:
        return self.root / f"{domain}.{split}.bin"

    def tokens(self, domain: str, split: str = "train") -> np.ndarray:
        """The read-only memory map of one split."""
        key = (domain, split)
        if key not in self._maps:
            path = self.path(domain, split)
            if path.stat().st_size == 0:
                self._maps[key] = np.zeros(0, dtype=self.tokenizer.dtype)
            else:
                self._maps[key] = np.memmap(path, dtype=self.tokenizer.dtype, mode="r")
        return self._maps[key]

    def counts(self) -> dict[str, dict[str, int]]:
        return {d: {s: int(self.path(d, s).stat().st_size // np.dtype(self.tokenizer.dtype).itemsize)
                    for s in ("train", "valid")} for d in self.names}

    def __getstate__(self):  # memory maps are reopened in each process
        state = self.__dict__.copy()
        state["_maps"] = {}
        return state


def _build_domain(domain: Domain, tokenizer: Tokenizer, root: Path) -> None:
    train_path, valid_path = root / f"{domain.name}.train.bin", root / f"{domain.name}.valid.bin"
    if train_path.exists() and valid_path.exists():
        return
    train = _encode_documents(domain_documents(domain, "train"), tokenizer)
    if domain.presplit:
        valid = _encode_documents(domain_documents(domain, "valid"), tokenizer)
    else:
        train, valid = split_blocks(train, domain.valid_fraction)
    if len(train) == 0 or len(valid) == 0:
        raise CorpusError(f"domain {domain.name!r} has no {'training' if len(train) == 0 else 'validation'} text")
    _write_atomic(valid, valid_path)
    _write_atomic(train, train_path)


def build_token_cache(corpus: Corpus, tokenizer: Tokenizer | None = None, cache_dir=None) -> TokenCache:
    """Tokenise every domain once into ``cache_dir`` (reused when already there) and map it."""
    tokenizer = tokenizer or ByteTokenizer()
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    root = cache_dir / f"{tokenizer.name}-v{CACHE_VERSION}-{corpus.fingerprint()[:20]}"
    root.mkdir(parents=True, exist_ok=True)
    for domain in corpus.domains:
        _build_domain(domain, tokenizer, root)
    meta = root / "meta.json"
    if not meta.exists():
        cache = TokenCache(root, corpus, tokenizer)
        with atomic_write(meta, "w") as fh:
            json.dump({"tokenizer": tokenizer.name, "domains": corpus.names, "label": corpus.label,
                       "tokens": cache.counts()}, fh, indent=2)
    return TokenCache(root, corpus, tokenizer)


def eval_windows(tokens: np.ndarray, seq_len: int, max_tokens: int) -> np.ndarray:
    """Fixed held-out windows of ``seq_len + 1`` tokens, evenly spread over ``tokens``.

    ``max_tokens // seq_len`` windows (at least one), fewer when the split is
    short (they never overlap). The same inputs always give the same windows.
    """
    width = seq_len + 1
    if len(tokens) < width:
        raise CorpusError(f"validation split has {len(tokens)} tokens, fewer than one window of {width}")
    n = max(1, min(max_tokens // seq_len, len(tokens) // width))
    starts = np.linspace(0, len(tokens) - width, n).round().astype(np.int64)
    return np.stack([np.asarray(tokens[s:s + width]) for s in starts])
