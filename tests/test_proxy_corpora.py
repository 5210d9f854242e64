"""Corpora: the bundled corpus, user loaders, the byte-level token cache, bad inputs."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest

from bayesmix.proxy.corpora import (BUNDLED_DIR, Corpus, CorpusError, Domain, bundled_corpus, domain_documents,
                                    load_corpus, read_documents)
from bayesmix.proxy.tokenize import ByteTokenizer, build_token_cache, eval_windows, split_blocks


def test_bundled_corpus_has_distinct_licensed_domains_with_fixed_splits():
    corpus = bundled_corpus()
    assert len(corpus.names) >= 4
    manifest = corpus.info
    provenance = (BUNDLED_DIR / "PROVENANCE.md").read_text()
    for name in corpus.names:
        info = manifest["domains"][name]
        assert info["license"] and info["source"]
        assert f"`{name}`" in provenance
        d = corpus.domain(name)
        assert d.presplit and all(p.is_file() for p in (*d.train, *d.valid))
        assert info["valid"]["documents"] > 0 and info["train"]["text_bytes"] > 1_000_000
    total = sum(p.stat().st_size for p in BUNDLED_DIR.rglob("*") if p.is_file())
    assert total < 8_000_000
    assert load_corpus() == corpus and load_corpus("bundled") == corpus


def test_bundled_validation_documents_are_not_in_training():
    corpus = bundled_corpus()
    d = corpus.domain("english")
    valid = list(domain_documents(d, "valid"))
    train = set(domain_documents(d, "train"))
    assert valid and not any(v in train for v in valid)


def _write_domains(root):
    (root / "prose").mkdir()
    (root / "prose" / "a.txt").write_text("The quick brown fox. " * 3000)
    (root / "prose" / "b.md").write_text("Jumps over the lazy dog. " * 3000)
    (root / "prose" / ".hidden").write_text("never read")
    with gzip.open(root / "web.jsonl.gz", "wt") as fh:
        for i in range(400):
            fh.write(json.dumps({"text": f"page {i}: " + "lorem ipsum " * 40, "id": i}) + "\n")
    pd.DataFrame({"body": [f"def f{i}(x):\n    return x + {i}\n" * 40 for i in range(300)]}).to_parquet(
        root / "code.parquet")
    split = root / "split"
    split.mkdir()
    (split / "train.txt").write_text("train text " * 2000)
    (split / "valid.txt").write_text("valid text " * 300)


def test_directory_corpus_reads_text_dirs_jsonl_and_parquet(tmp_path):
    _write_domains(tmp_path)
    corpus = load_corpus(tmp_path, text_column="text")
    assert corpus.names == ["code", "prose", "split", "web"]
    assert corpus.domain("split").presplit and not corpus.domain("prose").presplit
    prose = list(domain_documents(corpus.domain("prose")))
    assert len(prose) == 2 and "never read" not in "".join(prose)
    web = list(read_documents(tmp_path / "web.jsonl.gz"))
    assert len(web) == 400 and web[3].startswith("page 3:")
    code = list(read_documents(tmp_path / "code.parquet", text_column="body"))
    assert len(code) == 300
    with pytest.raises(CorpusError, match="no text column 'text'"):
        list(read_documents(tmp_path / "code.parquet"))


def test_token_cache_is_built_once_and_memory_mapped(tmp_path):
    (tmp_path / "src").mkdir()
    _write_domains(tmp_path / "src")
    corpus = load_corpus({"prose": tmp_path / "src" / "prose", "split": tmp_path / "src" / "split"})
    cache = build_token_cache(corpus, cache_dir=tmp_path / "cache")
    path = cache.path("prose", "train")
    stamp = path.stat().st_mtime_ns
    again = build_token_cache(corpus, cache_dir=tmp_path / "cache")
    assert again.root == cache.root and path.stat().st_mtime_ns == stamp
    train, valid = cache.tokens("prose", "train"), cache.tokens("prose", "valid")
    assert isinstance(train, np.memmap) and train.dtype == np.uint8
    n = len(("The quick brown fox. " * 3000).encode()) + len(("Jumps over the lazy dog. " * 3000).encode()) + 2
    assert len(train) + len(valid) == n
    assert 0.03 < len(valid) / n < 0.08
    assert int((np.asarray(train) == 0xFF).sum() + (np.asarray(valid) == 0xFF).sum()) == 2
    split_valid = ByteTokenizer().decode(cache.tokens("split", "valid"))
    assert split_valid.startswith("valid text")
    # changing a file changes the fingerprint, so a new cache is built
    (tmp_path / "src" / "split" / "valid.txt").write_text("other valid text " * 300)
    assert build_token_cache(corpus, cache_dir=tmp_path / "cache").root != cache.root


def test_byte_tokenizer_round_trips_utf8():
    tok = ByteTokenizer()
    text = "Señor Jesús — ünïcödé ✓"
    ids = tok.encode(text)
    assert ids.dtype == np.uint8 and tok.vocab_size == 256
    assert 0xFF not in ids.tolist()
    assert tok.decode(ids) == text


def test_split_blocks_and_eval_windows_are_fixed():
    tokens = np.arange(100_000) % 251
    train, valid = split_blocks(tokens, 0.05, block=1000)
    assert len(valid) == 5000 and len(train) == 95_000
    assert np.array_equal(valid[:1000], tokens[19_000:20_000])
    w1, w2 = eval_windows(valid, 64, 1024), eval_windows(valid, 64, 1024)
    assert w1.shape == (16, 65) and np.array_equal(w1, w2)
    assert eval_windows(valid[:200], 64, 10_000).shape == (3, 65)  # capped, never overlapping
    with pytest.raises(CorpusError, match="fewer than one window"):
        eval_windows(valid[:10], 64, 1024)
    with pytest.raises(CorpusError, match="too little text to hold out"):
        split_blocks(tokens[:5000], 0.05, block=1000)


def test_bad_corpus_inputs_have_clear_errors(tmp_path):
    with pytest.raises(CorpusError, match="corpus directory not found"):
        load_corpus(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="is empty"):
        load_corpus(tmp_path / "empty")
    with pytest.raises(CorpusError, match="no such file or directory"):
        load_corpus({"web": tmp_path / "missing.jsonl"})
    (tmp_path / "bad name.txt").write_text("x")
    with pytest.raises(CorpusError, match="must use only letters"):
        load_corpus({"bad name": tmp_path / "bad name.txt"})
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(CorpusError, match="duplicate domain"):
        Corpus((Domain("a", (tmp_path / "a.txt",)), Domain("a", (tmp_path / "a.txt",))))
    (tmp_path / "broken.jsonl").write_text('{"text": "ok"}\n{not json}\n')
    with pytest.raises(CorpusError, match=r"broken.jsonl:2: not valid JSON"):
        list(read_documents(tmp_path / "broken.jsonl"))
    (tmp_path / "notext.jsonl").write_text('{"body": "ok"}\n')
    with pytest.raises(CorpusError, match=r"notext.jsonl:1: record has no text column 'text'"):
        list(read_documents(tmp_path / "notext.jsonl"))
    (tmp_path / "num.jsonl").write_text('{"text": 3}\n')
    with pytest.raises(CorpusError, match="is int, not text"):
        list(read_documents(tmp_path / "num.jsonl"))
    (tmp_path / "fake.parquet").write_text("not parquet")
    with pytest.raises(CorpusError, match="not a readable Parquet file"):
        list(read_documents(tmp_path / "fake.parquet"))
    (tmp_path / "d").mkdir()
    with pytest.raises(CorpusError, match="holds no files"):
        list(read_documents(tmp_path / "d"))
    with pytest.raises(CorpusError, match="valid_fraction"):
        load_corpus({"a": tmp_path / "a.txt"}, valid_fraction=1.5)
    with pytest.raises(CorpusError, match="cannot make a corpus"):
        load_corpus(42)
    tiny = load_corpus({"a": tmp_path / "a.txt"})
    with pytest.raises(CorpusError, match="too little text"):
        build_token_cache(tiny, cache_dir=tmp_path / "cache")
