"""The SDEs against closed forms: Monte-Carlo marginals, prior density, DDPM/SMLD discretizations."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from score_sde.sde import VESDE, VPSDE, SubVPSDE, get_sde
from tests.helpers import simulate_forward
from tests.oracles import ALL_SDES


@pytest.mark.parametrize("name", ["vp", "subvp", "ve"])
@pytest.mark.parametrize("t_end", [0.3, 1.0])
def test_marginal_prob_matches_monte_carlo(name, t_end):
    sde = ALL_SDES[name]
    n = 20000
    x0 = jnp.tile(jnp.array([[1.5, -0.5]]), (n, 1))
    xt = np.asarray(simulate_forward(sde, jax.random.key(0), x0, t_end), np.float64)
    mean, std = sde.marginal_prob(x0[:1], jnp.array([t_end]))
    mean, std = np.asarray(mean[0]), float(std[0])
    if isinstance(sde, VESDE):
        # Exact variance of the VE SDE started at t = 0 is sigma(t)^2 - sigma_min^2;
        # marginal_prob keeps the published sigma(t) (see the VESDE docstring).
        assert std == pytest.approx(
            sde.sigma_min * (sde.sigma_max / sde.sigma_min) ** t_end, rel=1e-5
        )
        std = math.sqrt(std**2 - sde.sigma_min**2)
    se_mean = std / math.sqrt(n)
    np.testing.assert_array_less(np.abs(xt.mean(0) - mean), 4.5 * se_mean + 2e-3 * std)
    se_std = std / math.sqrt(2 * n)
    np.testing.assert_array_less(np.abs(xt.std(0) - std), 4.5 * se_std + 2e-3 * std)


@pytest.mark.parametrize("name", ["vp", "subvp", "ve"])
def test_prior_logp_is_the_normal_density(name):
    sde = ALL_SDES[name]
    z = sde.prior_sampling(jax.random.key(1), (5, 3, 4, 2))
    expected = (
        stats.norm(scale=sde.prior_std).logpdf(np.asarray(z, np.float64)).reshape(5, -1).sum(-1)
    )
    np.testing.assert_allclose(sde.prior_logp(z), expected, rtol=1e-5)
    big = sde.prior_sampling(jax.random.key(2), (20000, 1))
    assert float(jnp.std(big)) == pytest.approx(sde.prior_std, rel=0.03)


def test_vp_discretize_is_the_ddpm_chain():
    sde = VPSDE(beta_min=0.1, beta_max=20.0, N=1000)
    x = jax.random.normal(jax.random.key(0), (4, 3))
    idx = np.array([0, 1, 500, 999])
    t = jnp.asarray((idx + 0.25) / (sde.N - 1), jnp.float32)  # inside step i
    f, g = sde.discretize(x, t)
    betas = 0.1 / 1000 + idx * (20.0 - 0.1) / (1000 * 999)
    np.testing.assert_allclose(x + f, np.sqrt(1 - betas)[:, None] * np.asarray(x), rtol=1e-5)
    np.testing.assert_allclose(g, np.sqrt(betas), rtol=1e-5)
    # The chain's cumulative product approximates the continuous mean coefficient.
    alpha_cont = np.asarray(sde.marginal_coeffs(jnp.asarray(idx / 999.0, jnp.float32))[0])
    np.testing.assert_allclose(sde.sqrt_alphas_cumprod[idx], alpha_cont, atol=0.02)


def test_ve_discretize_is_the_smld_chain():
    sde = VESDE(sigma_min=0.01, sigma_max=50.0, N=1000)
    x = jax.random.normal(jax.random.key(0), (4, 3))
    idx = np.array([0, 1, 500, 999])
    f, g = sde.discretize(x, jnp.asarray((idx + 0.25) / 999.0, jnp.float32))
    sig = lambda i: 0.01 * (50.0 / 0.01) ** (i / 999.0)
    expected = np.where(idx == 0, 0.01, np.sqrt(sig(idx) ** 2 - sig(np.maximum(idx - 1, 0)) ** 2))
    np.testing.assert_allclose(g, expected, rtol=1e-4)
    np.testing.assert_array_equal(f, np.zeros_like(x))


def test_subvp_discretize_is_euler_maruyama():
    sde = SubVPSDE(N=100)
    x = jax.random.normal(jax.random.key(0), (3, 2))
    t = jnp.array([0.1, 0.5, 0.9])
    f, g = sde.discretize(x, t)
    drift, diffusion = sde.sde(x, t)
    np.testing.assert_allclose(f, drift / 100, rtol=1e-6)
    np.testing.assert_allclose(g, diffusion / 10, rtol=1e-6)
    # sub-VP std never exceeds VP std, and both share the mean.
    vp = VPSDE(N=100)
    ts = jnp.linspace(1e-3, 1, 50)
    assert bool(jnp.all(sde.marginal_coeffs(ts)[1] <= vp.marginal_coeffs(ts)[1] + 1e-7))
    np.testing.assert_allclose(sde.marginal_coeffs(ts)[0], vp.marginal_coeffs(ts)[0], rtol=1e-6)


@pytest.mark.parametrize("name", ["vp", "subvp", "ve"])
def test_reverse_sde_and_probability_flow(name):
    sde = ALL_SDES[name]
    score_fn = lambda x, t: -x * (1 + t[:, None])
    x = jax.random.normal(jax.random.key(0), (3, 2))
    t = jnp.array([0.2, 0.5, 0.8])
    f, g = sde.sde(x, t)
    s = score_fn(x, t)
    rd, rg = sde.reverse(score_fn).sde(x, t)
    np.testing.assert_allclose(rd, f - g[:, None] ** 2 * s, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rg, g, rtol=1e-6)
    pd, pg = sde.reverse(score_fn, probability_flow=True).sde(x, t)
    np.testing.assert_allclose(pd, f - 0.5 * g[:, None] ** 2 * s, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(pg, jnp.zeros_like(g))


@pytest.mark.parametrize("name", ["vp", "subvp", "ve"])
def test_jit_vmap_grad_safe(name):
    sde = ALL_SDES[name]
    x = jax.random.normal(jax.random.key(0), (4, 2))
    t = jnp.array([0.1, 0.3, 0.6, 0.9])
    eager = sde.marginal_prob(x, t)
    jitted = jax.jit(sde.marginal_prob)(x, t)
    np.testing.assert_allclose(eager[0], jitted[0], rtol=1e-6)
    per_example = jax.vmap(lambda xi, ti: sde.marginal_prob(xi[None], ti[None]))(x, t)
    np.testing.assert_allclose(per_example[1][:, 0], eager[1], rtol=1e-6)
    dstd = jax.vmap(jax.grad(lambda ti: sde.marginal_coeffs(ti)[1]))(t)
    assert bool(jnp.all(jnp.isfinite(dstd))) and bool(jnp.all(dstd > 0))
    # d std^2/dt relates to g^2: for VE, d sigma^2/dt = g^2 exactly.
    if isinstance(sde, VESDE):
        g2 = sde.sde(x, t)[1] ** 2
        np.testing.assert_allclose(2 * eager[1] * dstd, g2, rtol=1e-4)


def test_factory_and_validation():
    assert isinstance(get_sde("vpsde", beta_min=0.1, beta_max=20.0, N=10), VPSDE)
    assert isinstance(get_sde("subVPSDE"), SubVPSDE)
    assert isinstance(get_sde("vesde", sigma_min=0.01, sigma_max=50.0, N=10), VESDE)
    with pytest.raises(ValueError, match="valid names"):
        get_sde("cosine")
    with pytest.raises(ValueError, match="sigma_max"):
        VESDE(sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(ValueError, match="beta_min"):
        VPSDE(beta_min=5.0, beta_max=1.0)
    # SDEs are hashable so jitted functions can take them as static arguments.
    assert hash(VPSDE()) == hash(VPSDE())
