"""Bad-input benchmark: every case of tests/bad_inputs.py run through the CLI, plus kill -9 of a
two-worker train.

    python benchmarks/bench_bad_inputs.py [--json bad_inputs.json] [--no-fit] [--no-kill]

Counts: cases, clean errors (exit 2, one line, no traceback, inputs unchanged), tracebacks,
silent acceptances (exit 0), other exits, inputs overwritten, orphaned processes after kill -9.
The baseline is the target of the issue: every count but the clean errors is 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]  # this checkout's bayesmix first

from bad_inputs import (CASES, EXAMPLE, FAILING_BEFORE, NEEDS_FIT, error_lines, file_hashes, make_files,  # noqa: E402
                        orphans_after_kill, run_case)
from common import markdown_table  # noqa: E402


def small_fit(folder: Path) -> Path:
    """One short-chain mixing-law fit of the example runs."""
    from bayesmix.data.table import read_runs
    from bayesmix.inference.fit import fit

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit(read_runs(EXAMPLE), "mix", seed=0, n_starts=2,
                     sampler=dict(num_chains=1, num_warmup=20, num_samples=20, progress_bar=False))
    return result.save(folder / "fit.nc")


def classify(argv: str, message: str, folder: Path, fit_path: Path | None) -> dict:
    """Run one case; its outcome and whether every input file kept its bytes."""
    before = file_hashes(folder) | ({"FIT": file_hashes(fit_path.parent)} if fit_path else {})
    code, _, err = run_case(argv, folder, fit_path)
    after = file_hashes(folder) | ({"FIT": file_hashes(fit_path.parent)} if fit_path else {})
    lines = error_lines(err)
    if code is None or "Traceback" in err:
        outcome = "traceback"
    elif code == 0:
        outcome = "silent acceptance"
    elif code == 2 and len(lines) == 1:
        outcome = "clean error" if message in lines[0] else "clean error, other message"
    else:
        outcome = f"exit {code}"
    return {"outcome": outcome, "overwritten": after != before, "stderr": err.strip()[-300:]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", default="bad_inputs.json", help="where to write the counts (default bad_inputs.json)")
    parser.add_argument("--no-fit", action="store_true", help="skip the cases that need a saved fit (one short NUTS run)")
    parser.add_argument("--no-kill", action="store_true", help="skip the kill -9 of a two-worker train")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bayesmix-bad-") as tmp:
        folder = Path(tmp) / "inputs"
        make_files(folder)
        fit_path = None if args.no_fit else small_fit(Path(tempfile.mkdtemp(dir=tmp)))
        results = {}
        for case_id, argv_text, message in CASES:
            if case_id in NEEDS_FIT and fit_path is None:
                continue
            results[case_id] = classify(argv_text, message, folder, fit_path)
        workers, orphans = ([], []) if args.no_kill else orphans_after_kill(Path(tempfile.mkdtemp(dir=tmp)))

    def count(ids, outcome):
        return sum(results[i]["outcome"] == outcome for i in ids)

    groups = {"failing before (the issue's kinds)": [i for i in results if i in FAILING_BEFORE],
              "already passing kinds": [i for i in results if i not in FAILING_BEFORE],
              "all": list(results)}
    rows = []
    for name, ids in groups.items():
        rows.append({"group": name, "cases": len(ids), "clean errors": count(ids, "clean error"),
                     "other message": count(ids, "clean error, other message"),
                     "tracebacks": count(ids, "traceback"), "silent acceptances": count(ids, "silent acceptance"),
                     "other exits": sum(results[i]["outcome"].startswith("exit") for i in ids),
                     "inputs overwritten": sum(results[i]["overwritten"] for i in ids)})
    summary = dict(rows[-1], orphans_after_kill=len(orphans), workers_seen=len(workers), baseline_target=0)
    print(markdown_table(rows, list(rows[0])))
    if not args.no_kill:
        print(f"\nkill -9 of `bayesmix train --workers 2`: {len(workers)} child processes, {len(orphans)} still "
              "running 30 s later")
    bad = {i: r for i, r in results.items() if r["outcome"] != "clean error" or r["overwritten"]}
    for case_id, r in bad.items():
        print(f"- {case_id}: {r['outcome']}{' (input overwritten)' if r['overwritten'] else ''}: {r['stderr']}")
    payload = {"summary": summary, "groups": rows, "cases": results}
    Path(args.json).write_text(json.dumps(payload, indent=2))
    print("\n" + json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
