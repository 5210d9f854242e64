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


def test_support_distance_traces_in_jax_to_the_same_numbers():
    import jax
    import jax.numpy as jnp

    r = np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0], [0.6, 0.3, 0.1]])
    traced = jax.jit(lambda x: support_distance(x, jnp.asarray(TRIED), jnp))(jnp.asarray(r))
    np.testing.assert_allclose(np.asarray(traced), support_distance(r, TRIED), atol=1e-6)


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


# four domains, each tried share in [0, 0.5]; every tried mixture has x0 + x3 = 0.5
PAIRS = np.array([[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5], [0.5, 0.0, 0.5, 0.0], [0.0, 0.5, 0.0, 0.5]])
CORNER = np.array([[0.5, 0.0, 0.0, 0.5]])  # each share in range, domains 1 and 2 cut to 0 together


def test_hull_distance_is_zero_inside_and_exact_outside():
    from bayesmix.decide.support import hull_distance

    # inside: a tried mixture, a midpoint, and (0.6, 0.2, 0.2) = 0.2 row 0 + 0.8 row 2
    np.testing.assert_allclose(hull_distance(np.array([[1.0, 0, 0], [0.75, 0.25, 0], [0.6, 0.2, 0.2]]), TRIED),
                               0.0, atol=1e-9)
    # TV((0, 0, 1), x) = 1 - x_2 and the hull's largest x_2 is 0.25
    np.testing.assert_allclose(hull_distance(np.array([[0.0, 0.0, 1.0]]), TRIED), [0.75])
    # the joint corner: x0 + x3 = 1 where the hull holds 0.5, so TV >= 0.5, reached at the uniform mixture
    np.testing.assert_allclose(hull_distance(CORNER, PAIRS), [0.5])


def test_a_joint_corner_inside_every_range_and_the_radius_is_outside_the_trust_region():
    from bayesmix.decide.support import outside_range, support_table

    assert not outside_range(CORNER, PAIRS).any()  # the range rule cannot see it
    assert support_distance(CORNER, PAIRS)[0] <= trust_radius(PAIRS)  # nor the radius
    table = support_table(np.vstack([CORNER, [[0.25, 0.25, 0.25, 0.25]]]), PAIRS, ["a", "b", "c", "d"])
    assert table["inside_support"].tolist() == [False, True]
    assert table["outside_range"].tolist() == ["", ""]
    np.testing.assert_allclose(table["hull_distance"], [0.5, 0.0], atol=1e-9)


def test_hull_distance_rejects_mismatched_domains():
    from bayesmix.decide.support import hull_distance

    with pytest.raises(ValueError, match="candidates have 3 domains, the tried mixtures 4"):
        hull_distance(TRIED, PAIRS)


def test_removed_share_counts_single_domains_and_pairs_cut_below_every_tried_share():
    from bayesmix.decide.support import removed_share

    # smallest tried shares: domain 0 0.5, domains 1 and 2 zero (never counted); pairs: {0,1} 0.75, {0,2} 0.5
    r = np.array([[0.6, 0.3, 0.1], [0.2, 0.4, 0.4], [0.4, 0.3, 0.3], [0.0, 0.5, 0.5]])
    np.testing.assert_allclose(removed_share(r, TRIED), [0.0, 0.6 / 3, 0.2 / 3, 1 / 3])
    # a pair removed together that no run removed together: each alone was cut to zero once
    tried = np.array([[0.0, 0.5, 0.5], [0.5, 0.0, 0.5], [0.4, 0.3, 0.3]])
    np.testing.assert_allclose(removed_share(np.array([[0.0, 0.0, 1.0], [0.2, 0.2, 0.6]]), tried),
                               [2 / 3, (0.5 - 0.4) / 0.5 * 2 / 3])
    import jax.numpy as jnp

    np.testing.assert_allclose(np.asarray(removed_share(jnp.asarray(r), TRIED, jnp)), removed_share(r, TRIED),
                               atol=1e-6)


def test_removed_share_of_a_domains_own_evaluation_counts_only_the_groups_holding_it():
    from bayesmix.decide.support import removed_share

    r = np.array([[0.2, 0.4, 0.4], [0.0, 0.5, 0.5]])
    # domain 0 alone cut by 0.6 (then to zero) counts whole; the pair {0, 1} cut by 1/5 and 1/3 counts half
    np.testing.assert_allclose(removed_share(r, TRIED, own=0), [0.6, 1.0])
    np.testing.assert_allclose(removed_share(r, TRIED, own=1), [0.2 / 2, (1 / 3) / 2])
    np.testing.assert_allclose(removed_share(r, TRIED, own=2), [0.0, 0.0])  # {0, 2} is in range: 0.6 and 0.5
