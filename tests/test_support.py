"""Distances to the tried mixtures and the trust region: exact values."""

import numpy as np
import pytest

from bayesmix.decide.support import support_distance, total_variation, trust_radius

TRIED = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.5, 0.25, 0.25]])


def test_total_variation_identities():
    assert total_variation(TRIED, TRIED).diagonal().tolist() == [0, 0, 0]
    assert total_variation([1, 0, 0], [0, 1, 0])[0, 0] == 1.0
    np.testing.assert_allclose(total_variation(TRIED, TRIED), total_variation(TRIED, TRIED).T)


def test_support_distance_and_radius():
    # nearest-neighbour distances: 0.5 (to row 1), 0.25, 0.25 -> radius 0.5
    assert trust_radius(TRIED) == 0.5
    d = support_distance(np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0], [0.6, 0.3, 0.1]]), TRIED)
    np.testing.assert_allclose(d, [0.0, 0.75, 0.15])


def test_radius_needs_two_mixtures():
    with pytest.raises(ValueError, match="at least two tried mixtures"):
        trust_radius(TRIED[:1])


def test_outside_range_names_domains_cut_below_or_raised_above_every_tried_share():
    from bayesmix.decide.support import outside_range

    # tried shares span domain 0: [0.5, 1], domain 1: [0, 0.5], domain 2: [0, 0.25]
    beyond = outside_range(np.array([[0.6, 0.3, 0.1], [0.4, 0.3, 0.3], [0.75, 0.25, 0.0]]), TRIED)
    assert beyond.tolist() == [[False, False, False], [True, False, True], [False, False, False]]
    # a face the tried mixtures never reach: domain 0 cut to zero, below its smallest tried share 0.5
    assert outside_range(np.array([[0.0, 0.5, 0.5]]), TRIED)[0, 0]
