"""Build the bundled proxy-training corpus in ``bayesmix/data/bundled/corpus/``.

Five domains, each from openly licensed text found on a Debian system::

    code        Python standard-library source of the running interpreter    PSF-2.0
    english     King James Bible (1611), Debian package bible-kjv(-text)      public domain
    spanish     Reina-Valera Bible (1909), Debian package sword-text-sparv    public domain
    dictionary  GCIDE (Webster 1913 + WordNet 1.5), Debian package dict-gcide GPL-2.0-or-later
    tables      Unicode Character Database files, Debian package unicode-data Unicode licence

Each domain is cut into documents, shuffled with a fixed seed, capped at
``--max-bytes`` of UTF-8 text, and every 20th document is held out for
validation. The result is ``<domain>/{train,valid}.jsonl.xz`` (one
``{"text": ...}`` per line), ``manifest.json`` (sizes and SHA-256) and
``PROVENANCE.md``; licence texts go to ``licenses/``.

Needs (Debian): ``apt-get install bible-kjv sword-text-sparv diatheke dict-gcide unicode-data``.

    python scripts/make_corpus.py            # writes bayesmix/data/bundled/corpus
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import lzma
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bayesmix" / "data" / "bundled" / "corpus"
VALID_EVERY = 20
SEED = 20240607

SOURCES = {
    "code": {
        "source": "Python {python} standard library source (`Lib/*.py`, tests excluded), from the interpreter's own installation",
        "license": "PSF-2.0 (Python Software Foundation License Version 2)",
        "license_file": "PSF-2.0.txt",
        "documents": "one source file per document",
    },
    "english": {
        "source": "The King James Version of the Bible (1611), Debian packages `bible-kjv-text` {kjv} / `bible-kjv` (text read with `bible -f Gen1:1-Rev22:21`)",
        "license": "Public domain (copyright expired; see the Debian package's copyright file)",
        "license_file": None,
        "documents": "one chapter per document; one verse per line, led by its verse number",
    },
    "spanish": {
        "source": "La Santa Biblia, Reina-Valera 1909, Debian package `sword-text-sparv` {sparv} (text read with `diatheke -b spaRV1909eb -f plain`, Strong's tags removed)",
        "license": "Public domain (\"This work is not copyrighted. It is in the Public Domain.\")",
        "license_file": None,
        "documents": "one chapter per document; one verse per line, led by its verse number",
    },
    "dictionary": {
        "source": "GCIDE, the GNU Collaborative International Dictionary of English (Webster's Revised Unabridged Dictionary of 1913 with WordNet 1.5 and later additions), Debian package `dict-gcide` {gcide}; every 10th entry of the dictd file",
        "license": "GPL-2.0-or-later (GCIDE); the underlying 1913 Webster text is in the public domain",
        "license_file": "GPL-2.0.txt",
        "documents": "25 consecutive sampled entries per document",
    },
    "tables": {
        "source": "Unicode Character Database {ucd} text files (UnicodeData.txt, Scripts.txt, PropList.txt, ...), Debian package `unicode-data`",
        "license": "Unicode License (Unicode, Inc. data files licence; permissive)",
        "license_file": "Unicode.txt",
        "documents": "runs of 200 lines of one file",
    },
}


def _dpkg_version(package: str) -> str:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        sys.exit(f"make_corpus: Debian package {package!r} is not installed (see this script's docstring)")


def _run(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        sys.exit(f"make_corpus: {' '.join(cmd[:3])} failed: {exc}")


# --------------------------------------------------------------------------- domains


def code_documents() -> list[str]:
    lib = Path(sysconfig.get_paths()["stdlib"])
    skip = {"test", "tests", "idle_test", "site-packages", "__pycache__", "dist-packages"}
    docs = []
    for path in sorted(lib.rglob("*.py")):
        rel = path.relative_to(lib)
        if skip & set(rel.parts) or rel.name.startswith("test_"):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if text.strip():
            docs.append(text)
    return docs


def _chapters(verses) -> list[str]:
    """(book, chapter, verse, text) tuples -> one document per chapter."""
    docs, current, key = [], [], None
    for book, chapter, verse, text in verses:
        if (book, chapter) != key and current:
            docs.append("\n".join(current) + "\n")
            current = []
        key = (book, chapter)
        current.append(f"{verse} {text.strip()}")
    if current:
        docs.append("\n".join(current) + "\n")
    return docs


def english_documents() -> list[str]:
    pattern = re.compile(r"^(\d?[A-Za-z]+)(\d+):(\d+) (.*)$")
    verses = []
    for line in _run(["bible", "-f", "Gen1:1-Rev22:21"]).splitlines():
        m = pattern.match(line)
        if m:
            verses.append(m.groups())
    return _chapters(verses)


def spanish_documents() -> list[str]:
    pattern = re.compile(r"^(.+?) (\d+):(\d+): (.*)$")
    strong = re.compile(r"\s*<[GH]\d+>")
    verses = []
    text = _run(["diatheke", "-b", "spaRV1909eb", "-f", "plain", "-k", "Genesis 1:1-Revelation 22:21"])
    for line in text.splitlines():
        m = pattern.match(line)
        if m:
            book, chapter, verse, body = m.groups()
            verses.append((book, chapter, verse, " ".join(strong.sub("", body).split())))
    return _chapters(verses)


def _b64(text: str) -> int:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    value = 0
    for ch in text:
        value = value * 64 + alphabet.index(ch)
    return value


def dictionary_documents(every: int = 10, per_doc: int = 25) -> list[str]:
    data = gzip.open("/usr/share/dictd/gcide.dict.dz").read()
    offsets = []
    for line in Path("/usr/share/dictd/gcide.index").read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and not parts[0].startswith("00-database"):
            offsets.append((_b64(parts[1]), _b64(parts[2])))
    entries = sorted(set(offsets))[::every]
    texts = [data[o:o + n].decode("utf-8", errors="replace").strip("\n") + "\n" for o, n in entries]
    return ["\n".join(texts[i:i + per_doc]) for i in range(0, len(texts), per_doc)]


UCD_FILES = ("UnicodeData.txt", "Scripts.txt", "PropList.txt", "DerivedAge.txt", "Blocks.txt", "CaseFolding.txt",
             "SpecialCasing.txt", "EastAsianWidth.txt", "LineBreak.txt", "ArabicShaping.txt", "BidiMirroring.txt",
             "DerivedCoreProperties.txt", "NameAliases.txt", "NamedSequences.txt", "PropertyValueAliases.txt")


def tables_documents(lines_per_doc: int = 200) -> list[str]:
    docs = []
    for name in UCD_FILES:
        lines = Path("/usr/share/unicode", name).read_text(encoding="utf-8").splitlines()
        for i in range(0, len(lines), lines_per_doc):
            docs.append("\n".join(lines[i:i + lines_per_doc]) + "\n")
    return docs


BUILDERS = {"code": code_documents, "english": english_documents, "spanish": spanish_documents,
            "dictionary": dictionary_documents, "tables": tables_documents}


# --------------------------------------------------------------------------- assembly


def sample_and_split(docs: list[str], max_bytes: int, seed: int) -> tuple[list[str], list[str]]:
    """Shuffle documents with a fixed seed, keep them up to ``max_bytes``, hold out every 20th."""
    order = np.random.default_rng(seed).permutation(len(docs))
    kept, total = [], 0
    for i in order:
        size = len(docs[i].encode("utf-8"))
        if total + size > max_bytes and kept:
            continue
        kept.append(docs[i])
        total += size
    valid = kept[VALID_EVERY - 1::VALID_EVERY]
    train = [d for j, d in enumerate(kept) if (j + 1) % VALID_EVERY]
    return train, valid


def write_jsonl_xz(docs: list[str], path: Path) -> dict:
    payload = "".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs).encode("utf-8")
    path.write_bytes(lzma.compress(payload, preset=9 | lzma.PRESET_EXTREME))
    return {"file": path.name, "documents": len(docs), "text_bytes": sum(len(d.encode("utf-8")) for d in docs),
            "compressed_bytes": path.stat().st_size, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def copy_licenses(out: Path) -> None:
    lic = out / "licenses"
    lic.mkdir(parents=True, exist_ok=True)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    shutil.copyfile(stdlib / "LICENSE.txt", lic / "PSF-2.0.txt")
    shutil.copyfile("/usr/share/common-licenses/GPL-2", lic / "GPL-2.0.txt")
    shutil.copyfile("/usr/share/doc/unicode-data/copyright", lic / "Unicode.txt")
    shutil.copyfile("/usr/share/doc/bible-kjv-text/copyright", lic / "KJV-public-domain.txt")
    shutil.copyfile("/usr/share/doc/sword-text-sparv/copyright", lic / "RV1909-public-domain.txt")


def provenance(manifest: dict) -> str:
    lines = [
        "# Bundled corpus: provenance and licences",
        "",
        "Five training/evaluation domains for the proxy trainer, each assembled from openly",
        "licensed text by `scripts/make_corpus.py` (run it to rebuild; it names the Debian",
        "packages it reads). Each domain's documents were shuffled with a fixed seed, capped at",
        f"{manifest['max_bytes']:,} bytes of UTF-8 text, and every {VALID_EVERY}th document was held out as",
        "the fixed validation split. Files are JSON lines (`{\"text\": ...}`) compressed with xz.",
        "The texts are unchanged apart from this cutting into documents, the removal of verse",
        "references and Strong's-number tags from the Bibles, and the sampling of dictionary entries.",
        "",
        "| domain | source | licence | documents (train / valid) | text bytes (train / valid) |",
        "|---|---|---|---|---|",
    ]
    for name, info in manifest["domains"].items():
        t, v = info["train"], info["valid"]
        lines.append(f"| `{name}` | {info['source']} | {info['license']} | {t['documents']} / {v['documents']} | "
                     f"{t['text_bytes']:,} / {v['text_bytes']:,} |")
    lines += ["", "## Documents", ""]
    lines += [f"* `{name}`: {info['documents']}." for name, info in manifest["domains"].items()]
    lines += [
        "",
        "## Licence texts",
        "",
        "`licenses/` holds the licence or copyright notice of each source: `PSF-2.0.txt` (code),",
        "`GPL-2.0.txt` (dictionary; GCIDE is GPL-2.0-or-later, distributed here as a separate data",
        "file alongside, not linked into, the MIT-licensed package), `Unicode.txt` (tables; the files",
        "were split into runs of lines and are otherwise unmodified), `KJV-public-domain.txt` and",
        "`RV1909-public-domain.txt` (the two Bibles).",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--max-bytes", type=int, default=3_000_000, help="text bytes per domain (default 3 MB)")
    args = parser.parse_args(argv)

    versions = {"python": sysconfig.get_python_version() + f" ({sys.version.split()[0]})",
                "kjv": _dpkg_version("bible-kjv-text"), "sparv": _dpkg_version("sword-text-sparv"),
                "gcide": _dpkg_version("dict-gcide"), "ucd": _dpkg_version("unicode-data")}
    args.out.mkdir(parents=True, exist_ok=True)
    manifest = {"format": "jsonl.xz", "text_column": "text", "max_bytes": args.max_bytes,
                "valid_every": VALID_EVERY, "seed": SEED, "domains": {}}
    for k, (name, build) in enumerate(BUILDERS.items()):
        docs = build()
        train, valid = sample_and_split(docs, args.max_bytes, SEED + k)
        folder = args.out / name
        folder.mkdir(exist_ok=True)
        info = {key: (val.format(**versions) if isinstance(val, str) else val) for key, val in SOURCES[name].items()}
        info["train"] = write_jsonl_xz(train, folder / "train.jsonl.xz")
        info["valid"] = write_jsonl_xz(valid, folder / "valid.jsonl.xz")
        manifest["domains"][name] = info
        print(f"{name:11s} {len(docs):6d} docs -> train {info['train']['text_bytes']:>9,d} B "
              f"({info['train']['compressed_bytes']:>9,d} xz), valid {info['valid']['text_bytes']:>7,d} B")
    copy_licenses(args.out)
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    (args.out / "PROVENANCE.md").write_text(provenance(manifest))
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {args.out} ({total / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
