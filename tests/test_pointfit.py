import jax
import numpy as np

from bayesmix.laws.base import pad_groups
from bayesmix.laws.mixing import MixingLaw
from bayesmix.laws.step import StepLaw
from bayesmix.data.simulate import dirichlet_mixtures, simulate_curves, simulate_mixing


def test_pad_groups_scatters_and_masks():
    group = np.array([1, 0, 1, 1])
    values = np.array([10.0, 20.0, 30.0, 40.0])
    padded, mask = pad_groups(group, 2, values)
    assert mask.tolist() == [[True, False, False], [True, True, True]]
    assert padded[1].tolist() == [10.0, 30.0, 40.0]
    assert padded[0, 0] == 20.0 and np.isfinite(padded).all()


def test_step_point_fit_recovers_noiseless_curves():
    steps = np.geomspace(1000, 30000, 12).astype(int)
    runs = simulate_curves(runs=["a", "b"], steps=steps, E=np.array([2.0, 2.5]), A=np.array([40.0, 80.0]),
                           alpha=np.array([0.5, 0.6]), noise=0.0, seed=0)
    law = StepLaw()
    data = law.prepare(runs)
    with jax.enable_x64(True):
        point = law.point_fit(data, seed=0, n_starts=16)
    natural = law.natural_parameters({k: v[None] for k, v in point.items()}, data.meta["x_ref"])
    np.testing.assert_allclose(natural["E"][0], [2.0, 2.5], rtol=1e-3)
    np.testing.assert_allclose(natural["alpha"][0], [0.5, 0.6], rtol=1e-3)
    np.testing.assert_allclose(natural["A"][0], [40.0, 80.0], rtol=1e-2)


def test_m4_point_fit_recovers_noiseless_law():
    mixtures = dirichlet_mixtures(30, ["a", "b", "c"], seed=1)
    t = np.array([[-1.0, 0.4, 0.6]])
    runs = simulate_mixing(mixtures, c=np.array([1.5]), b=np.array([0.2]), t=t, evals=["a"], noise=0.0, seed=0)
    law = MixingLaw()
    data = law.prepare(runs)
    with jax.enable_x64(True):
        point = law.point_fit(data, seed=0, n_starts=16)
    natural = law.natural_parameters({k: v[None] for k, v in point.items()}, data.meta["r0"])
    np.testing.assert_allclose(natural["c"][0], [1.5], rtol=1e-3)
    # t is identified up to a common shift: compare centred vectors
    np.testing.assert_allclose(natural["t"][0], t - t.mean(), atol=1e-3)
    # b absorbs the shift: c + exp(b + t.r) must match at any mixture
    r = np.array([0.2, 0.3, 0.5])
    truth = 1.5 + np.exp(0.2 + t[0] @ r)
    fitted = natural["c"][0][0] + np.exp(natural["b"][0][0] + natural["t"][0][0] @ r)
    assert abs(fitted - truth) < 1e-4
