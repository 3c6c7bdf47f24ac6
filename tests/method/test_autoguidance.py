"""Autoguidance (guidance.autoguided_score) with exact scores of Gaussian mixtures.

- The guided score is s_g + w (s - s_g) of the two exact marginal scores, under every SDE and at
  several times; w = 1 is the main score itself; outside the guidance interval the main score
  exactly, inside the formula.
- For a Gaussian pair with equal means, N(m, v) and a worse guide N(m, v_g), every marginal score
  is linear, so the guided score at time t is the exact score of the Gaussian of precision
  w / v(t) + (1 - w) / v_g(t), and the probability-flow ODE maps the prior's variance to a
  variance at eps given by one scalar ODE (`_ode_variance`): the sampled variance follows it, and
  w > 1 shrinks it below the model's (a guide broader than the model sharpens).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from score_sde import guidance, sampling
from score_sde.gmm import GaussianMixture
from tests.oracles import ALL_SDES, mixture_2d

TIMES = (1e-3, 0.05, 0.3, 0.7, 1.0)


def _pair():
    """(model, guide): the 2-D mixture and a worse copy (covariances doubled, means shifted)."""
    model = mixture_2d()
    return model, GaussianMixture(model.weights, model.means + 0.1, 2.0 * model.covs)


def _x(n=8, d=2, seed=0):
    return jax.random.normal(jax.random.key(seed), (n, d))


@pytest.mark.parametrize("sde_name", sorted(ALL_SDES))
@pytest.mark.parametrize("w", [0.0, 0.5, 2.0, 3.5])
def test_guided_score_is_the_guide_plus_w_times_the_difference(sde_name, w):
    sde = ALL_SDES[sde_name]
    model, guide = _pair()
    guided = guidance.autoguided_score(model.score_fn(sde), guide.score_fn(sde), w)
    x = _x()
    for t in TIMES:
        tt = jnp.full((x.shape[0],), t)
        s = np.asarray(model.marginal_score(sde, x, tt), np.float64)
        g = np.asarray(guide.marginal_score(sde, x, tt), np.float64)
        np.testing.assert_allclose(guided(x, tt), g + w * (s - g), rtol=1e-5, atol=1e-5)


def test_weight_one_is_the_main_score_itself():
    sde = ALL_SDES["vp"]
    model, guide = _pair()
    score_fn = model.score_fn(sde)
    assert guidance.autoguided_score(score_fn, guide.score_fn(sde), 1.0) is score_fn
    assert guidance.autoguided_score(score_fn, guide.score_fn(sde), 1.0, (0.2, 0.4)) is score_fn


def test_outside_the_interval_the_main_score_exactly_inside_the_formula():
    sde, w, (lo, hi) = ALL_SDES["vp"], 2.5, (0.2, 0.6)
    model, guide = _pair()
    s_fn, g_fn = model.score_fn(sde), guide.score_fn(sde)
    guided = jax.jit(guidance.autoguided_score(s_fn, g_fn, w, (lo, hi)))
    everywhere = jax.jit(guidance.autoguided_score(s_fn, g_fn, w))
    t = jnp.array([0.01, 0.1, 0.2, 0.4, 0.6, 0.61, 0.9, 1.0])
    inside = np.asarray((t >= lo) & (t <= hi))
    x = _x(len(t))
    out, s, full = (np.asarray(f(x, t)) for f in (guided, jax.jit(s_fn), everywhere))
    np.testing.assert_array_equal(out[~inside], s[~inside])  # bit for bit
    np.testing.assert_allclose(out[inside], full[inside], rtol=1e-6, atol=1e-6)
    assert np.abs(out[inside] - s[inside]).min() > 1e-3  # guidance did something there


def test_images_shaped_inputs_broadcast_the_interval_per_row():
    sde, w = ALL_SDES["vp"], 2.0
    model = GaussianMixture.isotropic([1.0], jnp.zeros((1, 12)), [0.5])
    guide = GaussianMixture.isotropic([1.0], jnp.zeros((1, 12)), [0.9])
    guided = guidance.autoguided_score(model.score_fn(sde), guide.score_fn(sde), w, (0.5, 1.0))
    x, t = _x(2, 12).reshape(2, 2, 2, 3), jnp.array([0.1, 0.8])
    out = np.asarray(guided(x, t))
    s, g = (np.asarray(m.score_fn(sde)(x, t)) for m in (model, guide))
    assert out.shape == x.shape
    np.testing.assert_array_equal(out[0], s[0])
    np.testing.assert_allclose(out[1], g[1] + w * (s[1] - g[1]), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("sde_name", ["vp", "ve"])
@pytest.mark.parametrize("w", [0.5, 2.0])
def test_gaussian_pair_guided_score_is_the_gaussian_of_combined_precision(sde_name, w):
    sde, m, v, v_g = ALL_SDES[sde_name], 0.3, 0.2, 0.5
    model = GaussianMixture.isotropic([1.0], jnp.full((1, 2), m), [v**0.5])
    guide = GaussianMixture.isotropic([1.0], jnp.full((1, 2), m), [v_g**0.5])
    guided = guidance.autoguided_score(model.score_fn(sde), guide.score_fn(sde), w)
    x = _x()
    for t in TIMES:
        tt = jnp.full((x.shape[0],), t)
        alpha, std = (float(a[0]) for a in sde.marginal_coeffs(tt))
        var, var_g = alpha**2 * v + std**2, alpha**2 * v_g + std**2
        precision = w / var + (1 - w) / var_g
        expected = -precision * (np.asarray(x, np.float64) - alpha * m)
        np.testing.assert_allclose(guided(x, tt), expected, rtol=1e-5, atol=1e-5)


def _ode_variance(sde, w, v, v_g, eps=1e-3, steps=4000):
    """Variance at eps of the probability-flow ODE with the guided score of N(0, v), N(0, v_g).

    The guided score is -P(t) x with P = w / (alpha^2 v + std^2) + (1 - w) / (alpha^2 v_g + std^2);
    with drift c(t) x, the ODE dx/dt = (c + g^2 P / 2) x gives, in reverse time tau = T - t,
    dV/dtau = -2 (c + g^2 P / 2) V from the prior's variance. RK4 in float64.
    """
    ts = np.linspace(sde.T, eps, steps + 1)
    grid = np.concatenate([ts, 0.5 * (ts[:-1] + ts[1:])])  # ends, then midpoints
    tt = jnp.asarray(grid, jnp.float32)
    drift, g = sde.sde(jnp.ones((len(grid), 1)), tt)
    alpha, std = (np.asarray(a, np.float64) for a in sde.marginal_coeffs(tt))
    c, g2 = np.asarray(drift[:, 0], np.float64), np.asarray(g, np.float64) ** 2
    p = w / (alpha**2 * v + std**2) + (1 - w) / (alpha**2 * v_g + std**2)
    r = -2 * (c + 0.5 * g2 * p)
    var, n = sde.prior_std**2, len(ts)
    for i in range(steps):
        h, mid = ts[i] - ts[i + 1], n + i
        k1 = r[i] * var
        k2 = r[mid] * (var + 0.5 * h * k1)
        k3 = r[mid] * (var + 0.5 * h * k2)
        k4 = r[i + 1] * (var + h * k3)
        var = var + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return var


def test_ode_sampling_with_the_guided_score_follows_the_exact_variance():
    sde, v, v_g, n = ALL_SDES["vp"], 0.25, 0.6, 4000
    model = GaussianMixture.isotropic([1.0], jnp.zeros((1, 1)), [v**0.5])
    guide = GaussianMixture.isotropic([1.0], jnp.zeros((1, 1)), [v_g**0.5])
    sampler = jax.jit(sampling.get_ode_sampler(sde, (n, 1), denoise=False), static_argnums=1)
    measured = {}
    for w in (1.0, 2.0):
        score = guidance.autoguided_score(model.score_fn(sde), guide.score_fn(sde), w)
        x = np.asarray(sampler(jax.random.key(0), score)[0], np.float64)[:, 0]
        expected = _ode_variance(sde, w, v, v_g)
        se = expected * np.sqrt(2 / n)
        assert abs(x.var() - expected) < 4.5 * se, (w, x.var(), expected)
        measured[w] = x.var()
    assert _ode_variance(sde, 2.0, v, v_g) < 0.9 * _ode_variance(sde, 1.0, v, v_g)
    assert measured[2.0] < measured[1.0]


@pytest.mark.parametrize(
    "weight, interval, needle",
    [(float("nan"), None, "weight"), (2.0, (0.6, 0.2), "interval")],
)
def test_bad_arguments_raise_naming_them(weight, interval, needle):
    s = ALL_SDES["vp"]
    fn = mixture_2d().score_fn(s)
    with pytest.raises(ValueError, match=needle):
        guidance.autoguided_score(fn, fn, weight, interval)
