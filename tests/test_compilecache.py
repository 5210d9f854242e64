"""Compiled programs kept on disk: where they go, when the cache is off, and that a second
process loads what the first compiled (each case in a fresh interpreter: JAX decides once per
process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bayesmix.inference.compilecache import ENV, cache_dir_from_env, default_cache_dir, prune

PROGRAM = """
import json, sys
import jax, jax.numpy as jnp
from bayesmix.inference.compilecache import use_compile_cache
folder = use_compile_cache()
value = float(jax.jit(lambda x: jnp.sin(x) * 3.0 + x ** 2)(jnp.arange(7.0)).sum())
print(json.dumps({"folder": None if folder is None else str(folder), "value": value,
                  "jax": jax.config.jax_compilation_cache_dir}))
"""


def run_fresh(code: str, env: dict) -> dict:
    import json

    base = {k: v for k, v in os.environ.items() if k not in (ENV, "JAX_COMPILATION_CACHE_DIR")}
    out = subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True,
                         timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def entries(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if not p.name.startswith(".")} if folder.is_dir() else set()


def test_the_folder_comes_from_the_environment(tmp_path):
    assert cache_dir_from_env({ENV: str(tmp_path)}) == tmp_path
    assert cache_dir_from_env({ENV: "~/x"}) == Path("~/x").expanduser()
    for off in ("0", "off", "False", " no "):
        assert cache_dir_from_env({ENV: off}) is None
    assert cache_dir_from_env({}) == default_cache_dir() == cache_dir_from_env({ENV: ""})
    assert default_cache_dir().parts[-2:] == ("bayesmix", "jax")


def test_prune_drops_the_oldest_files_down_to_half_the_limit(tmp_path):
    for k in range(10):  # file k: 100 bytes, written at time k
        path = tmp_path / f"p{k}"
        path.write_bytes(b"x" * 100)
        os.utime(path, ns=(k * 10**9, k * 10**9))
    assert prune(tmp_path, max_bytes=1000) == 0 and len(entries(tmp_path)) == 10  # at the limit: kept
    assert prune(tmp_path, max_bytes=900) == 6  # 1000 > 900: down to 450 bytes
    assert entries(tmp_path) == {"p6", "p7", "p8", "p9"}


def test_a_second_process_loads_what_the_first_compiled(tmp_path):
    folder = tmp_path / "cache"
    first = run_fresh(PROGRAM, {ENV: str(folder)})
    assert first["folder"] == first["jax"] == str(folder)
    stored = entries(folder)
    assert stored, "the first process stored nothing"
    second = run_fresh(PROGRAM, {ENV: str(folder)})
    assert second["value"] == first["value"]
    assert entries(folder) == stored  # nothing compiled afresh: every program was found


def test_off_means_no_folder_and_a_users_jax_folder_is_kept(tmp_path):
    off = run_fresh(PROGRAM, {ENV: "0"})
    assert off["folder"] is None and not off["jax"]
    theirs = tmp_path / "theirs"
    kept = run_fresh(PROGRAM, {ENV: str(tmp_path / "ours"), "JAX_COMPILATION_CACHE_DIR": str(theirs)})
    assert kept["folder"] == kept["jax"] == str(theirs) and not (tmp_path / "ours").exists()


def test_an_unwritable_folder_warns_and_compiles_afresh(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = ("import warnings, json\nwith warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always')\n"
            "    from bayesmix.inference.compilecache import use_compile_cache\n"
            "    folder = use_compile_cache()\n"
            "print(json.dumps({'folder': folder, 'warnings': [str(x.message) for x in w]}))")
    got = run_fresh(code, {ENV: str(blocker / "cache")})
    assert got["folder"] is None
    assert any("cannot keep compiled programs in" in m and ENV in m for m in got["warnings"])


@pytest.mark.parametrize("argv,expect", [(["report", "missing.nc", "--out", "r.html"], True),
                                         (["train", "--mixtures", "missing.csv", "--out", "runs.parquet"], False)])
def test_the_command_line_turns_it_on_except_for_the_trainer(tmp_path, argv, expect):
    folder = tmp_path / "cli"
    argv = [str(tmp_path / a) if a.startswith("missing") else a for a in argv]
    code = ("import json, jax\nfrom bayesmix.cli import main\n"
            f"rc = main({argv!r})\n"
            "print(json.dumps({'rc': rc, 'jax': jax.config.jax_compilation_cache_dir}))")
    got = run_fresh(code, {ENV: str(folder)})
    assert got["rc"] == 2  # the missing file, after the cache was (or was not) turned on
    assert (got["jax"] == str(folder)) is expect
