"""Bad inputs to every command: exit status 2, one line saying what is wrong, no traceback,
every input file unchanged. The cases live in ``tests/bad_inputs.py`` (shared with
``benchmarks/bench_bad_inputs.py``); those that need a saved fit use one small fit per module."""

from __future__ import annotations

import warnings

import pytest

from bad_inputs import CASES, NEEDS_FIT, error_lines, file_hashes, make_files, run_case


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("bad-inputs")
    make_files(path)
    return path


@pytest.fixture(scope="module")
def fit_path(tmp_path_factory):
    """A small mixing-law fit of the example runs at its point fit (:func:`conftest.mocked_nuts`),
    saved once."""
    from bayesmix.data.table import read_runs
    from bayesmix.inference.fit import fit
    from bad_inputs import EXAMPLE
    from conftest import mocked_nuts

    with warnings.catch_warnings(), mocked_nuts():
        warnings.simplefilter("ignore")
        result = fit(read_runs(EXAMPLE), "mix", seed=0, n_starts=2,
                     sampler=dict(num_chains=1, num_warmup=20, num_samples=20, progress_bar=False))
    return result.save(tmp_path_factory.mktemp("fit") / "fit.nc")


def check_case(argv, message, folder, fit_path=None):
    before = file_hashes(folder) | ({"FIT": file_hashes(fit_path.parent)} if fit_path else {})
    code, _, err = run_case(argv, folder, fit_path)
    assert "Traceback" not in err, err
    lines = error_lines(err)
    assert code == 2, (code, err)
    assert len(lines) == 1, lines
    assert message in lines[0], lines[0]
    after = file_hashes(folder) | ({"FIT": file_hashes(fit_path.parent)} if fit_path else {})
    assert after == before, "an input file changed"


FAST_CASES = [c for c in CASES if c[0] not in NEEDS_FIT]
FIT_CASES = [c for c in CASES if c[0] in NEEDS_FIT]


@pytest.mark.parametrize("argv, message", [c[1:] for c in FAST_CASES], ids=[c[0] for c in FAST_CASES])
def test_bad_input_fails_cleanly(argv, message, folder):
    check_case(argv, message, folder)


@pytest.mark.slow
@pytest.mark.parametrize("argv, message", [c[1:] for c in FIT_CASES], ids=[c[0] for c in FIT_CASES])
def test_bad_input_with_a_fit_fails_cleanly(argv, message, folder, fit_path):
    check_case(argv, message, folder, fit_path)


def test_the_suite_is_large():
    assert len(CASES) >= 206
