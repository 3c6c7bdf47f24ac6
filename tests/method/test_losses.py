"""Losses: minimized at the exact score, unbiased importance sampling, discrete losses by definition."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from score_sde import losses
from score_sde.sde import VESDE, VPSDE
from tests.oracles import ALL_SDES, mixture_2d

BATCH = 20000


def _perturbed_exact_score(gmm, sde):
    """score_apply whose params c perturb the exact score along x: s* + c x."""

    def score_apply(params, x, t, *, train=False, rng=None, class_labels=None):
        return gmm.marginal_score(sde, x, t) + params * x

    return score_apply


def _argmin_and_curvature(loss_fn, batch):
    key = jax.random.key(7)
    f = lambda c: loss_fn(c, key, batch)
    d1 = jax.grad(f)(0.0)
    d2 = jax.grad(jax.grad(f))(0.0)
    return float(-d1 / d2), f


WEIGHTINGS = {
    "default": dict(),
    "reduce_mean": dict(reduce_mean=True),
    "likelihood": dict(likelihood_weighting=True),
    "importance": dict(likelihood_weighting=True, importance_weighting=True),
}


@pytest.mark.parametrize("sde_name", ["vp", "subvp", "ve"])
@pytest.mark.parametrize("weighting", list(WEIGHTINGS))
def test_dsm_loss_is_minimized_at_the_exact_score(sde_name, weighting):
    sde, gmm = ALL_SDES[sde_name], mixture_2d()
    loss_fn = losses.get_sde_loss_fn(sde, _perturbed_exact_score(gmm, sde), **WEIGHTINGS[weighting])
    batch = {"x": gmm.sample(jax.random.key(0), BATCH)}
    c_star, f = _argmin_and_curvature(loss_fn, batch)
    assert abs(c_star) < 0.03, c_star
    base = float(f(0.0))
    assert np.isfinite(base) and base < float(f(0.2)) and base < float(f(-0.2))
    assert np.isfinite(float(jax.grad(f)(0.2)))


@pytest.mark.parametrize("sde_name", ["vp", "subvp", "ve"])
def test_importance_sampling_keeps_the_expectation_and_lowers_variance(sde_name):
    sde, gmm = ALL_SDES[sde_name], mixture_2d()
    score_apply = _perturbed_exact_score(gmm, sde)
    plain = jax.jit(losses.get_sde_loss_fn(sde, score_apply, likelihood_weighting=True))
    imp = jax.jit(
        losses.get_sde_loss_fn(
            sde, score_apply, likelihood_weighting=True, importance_weighting=True
        )
    )
    batch = {"x": gmm.sample(jax.random.key(0), 4000)}
    keys = jax.random.split(jax.random.key(1), 40)
    a = np.array([float(plain(0.3, k, batch)) for k in keys])
    b = np.array([float(imp(0.3, k, batch)) for k in keys])
    se = np.sqrt(a.var() / len(a) + b.var() / len(b))
    assert abs(a.mean() - b.mean()) < 4 * se, (a.mean(), b.mean(), se)
    assert b.std() < a.std()


def test_importance_time_sampler_density_is_exact():
    sde = VPSDE()
    sampler = losses.ImportanceTimeSampler(sde, 1e-5)
    t, q = sampler(jax.random.key(0), 200000)
    assert float(t.min()) >= 1e-5 and float(t.max()) <= 1.0
    # E_q[1/q(t)] = T - eps (the reweighting integrates to the uniform measure).
    assert float(jnp.mean(1.0 / q)) == pytest.approx(1.0 - 1e-5, rel=0.02)
    # Density proportional to g^2 / std^2 ~ 1/t near 0: half the mass below the geometric midpoint.
    assert 0.2 < float(jnp.mean(t < 0.01)) < 0.8


def _discrete_optimal_net(gmm, sde, kind):
    """The Bayes-optimal DDPM noise predictor / SMLD score for a mixture, perturbed by c x."""

    def apply_fn(params, x, labels, *, train=False, rng=None, class_labels=None):
        i = labels.astype(jnp.int32)
        if kind == "ddpm":
            a = jnp.asarray(sde.sqrt_alphas_cumprod, x.dtype)[i]
            s = jnp.asarray(sde.sqrt_1m_alphas_cumprod, x.dtype)[i]
            return -s[:, None] * gmm.evaluate(x, a, s)[1] + params * x
        sigma = jnp.asarray(sde.discrete_sigmas[::-1].copy(), x.dtype)[i]
        return gmm.evaluate(x, 1.0, sigma)[1] + params * x

    return apply_fn


@pytest.mark.parametrize("kind", ["ddpm", "smld"])
def test_discrete_losses_match_their_definitions(kind):
    gmm = mixture_2d()
    sde = VPSDE() if kind == "ddpm" else VESDE()
    factory = losses.get_ddpm_loss_fn if kind == "ddpm" else losses.get_smld_loss_fn
    loss_fn = factory(sde, _discrete_optimal_net(gmm, sde, kind))
    batch = {"x": gmm.sample(jax.random.key(0), BATCH)}
    c_star, f = _argmin_and_curvature(loss_fn, batch)
    assert abs(c_star) < 0.03 and float(f(0.0)) < float(f(0.2))
    # A network that outputs zero: DDPM gives E mean(z^2) = 1; SMLD gives E 0.5 sum(z^2) = D / 2.
    zero = lambda params, x, labels, **kw: jnp.zeros_like(x)
    value = float(factory(sde, zero)(None, jax.random.key(3), batch))
    assert value == pytest.approx(1.0 if kind == "ddpm" else batch["x"].shape[1] / 2, rel=0.02)
    # The dispatcher picks the same loss for continuous=False.
    same = losses.get_loss_fn(
        sde, _discrete_optimal_net(gmm, sde, kind), continuous=False, reduce_mean=kind == "ddpm"
    )
    assert float(same(0.1, jax.random.key(4), batch)) == pytest.approx(
        float(loss_fn(0.1, jax.random.key(4), batch)), rel=1e-6
    )


def test_loss_configuration_errors():
    sde = ALL_SDES["subvp"]
    net = lambda params, x, labels, **kw: x
    with pytest.raises(ValueError, match="continuous=True"):
        losses.get_loss_fn(sde, net, continuous=False)
    with pytest.raises(ValueError, match="likelihood_weighting=True"):
        losses.get_sde_loss_fn(sde, net, importance_weighting=True)
    with pytest.raises(ValueError, match="eps"):
        losses.get_sde_loss_fn(sde, net, eps=0.0)
    with pytest.raises(ValueError, match="continuous"):
        losses.get_loss_fn(VPSDE(), net, continuous=False, likelihood_weighting=True)
