"""The Gaussian-mixture oracle itself: score = grad log-density; samples have the stated moments."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.oracles import ALL_SDES, assert_matches_mixture, mixture_2d, mixture_nd


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vp", "subvp", "ve"])
def test_score_is_gradient_of_log_density(name):
    sde = ALL_SDES[name]
    gmm = mixture_nd(3)
    x = jax.random.normal(jax.random.key(0), (6, 3))
    t = jnp.linspace(0.05, 0.9, 6)
    auto = jax.vmap(jax.grad(lambda xi, ti: gmm.marginal_log_prob(sde, xi[None], ti[None])[0]))(
        x, t
    )
    np.testing.assert_allclose(gmm.marginal_score(sde, x, t), auto, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_samples_and_marginal_samples():
    gmm = mixture_2d()
    assert_matches_mixture(gmm.sample(jax.random.key(0), 20000), gmm)
    sde = ALL_SDES["vp"]
    xt = gmm.marginal_sample(jax.random.key(1), sde, 0.4, 20000)
    alpha, std = sde.marginal_coeffs(jnp.asarray(0.4))
    expected_cov = alpha**2 * gmm.covariance() + std**2 * jnp.eye(2)
    np.testing.assert_allclose(np.cov(np.asarray(xt).T), expected_cov, atol=0.03)
    # log-density integrates to one (grid quadrature in 2-D).
    g = jnp.linspace(-4, 4, 401)
    grid = jnp.stack(jnp.meshgrid(g, g), -1).reshape(-1, 2)
    mass = jnp.sum(jnp.exp(gmm.log_prob(grid))) * (g[1] - g[0]) ** 2
    assert float(mass) == pytest.approx(1.0, abs=1e-3)
