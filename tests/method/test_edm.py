"""EDM's preconditioning and loss (score_sde.score_fn.Preconditioning, losses.get_edm_loss_fn)
against the exact denoiser of a Gaussian mixture.

- Wrapping the exact denoiser as the network F of each preconditioning ('edm', 'vp', 've') and
  unwrapping it again gives back the exact denoiser, and the score derived from it
  (score_fn.get_score_fn with the preconditioning) is the exact score under every SDE.
- The EDM loss, as a function of a perturbation of the network around the exact one, is minimal at
  the exact denoiser.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from score_sde import losses, score_fn
from tests.oracles import ALL_SDES, mixture_2d

KINDS = ("edm", "vp", "ve")


def _sigma_of_c_noise(p: score_fn.Preconditioning, c_noise):
    """Inverse of c_noise(sigma) for each preconditioning (the test's own closed forms)."""
    match p.kind:
        case "edm":
            return jnp.exp(4 * c_noise)
        case "vp":
            t = c_noise / 999.0
            b = p.beta_min * t + 0.5 * (p.beta_max - p.beta_min) * t**2
            return jnp.sqrt(jnp.expm1(b))
        case _:
            return 2 * jnp.exp(c_noise)


def exact_network(p: score_fn.Preconditioning, gmm, perturbation: float = 0.0):
    """The network F whose preconditioned denoiser is the mixture's exact one (+ perturbation *
    the input, to probe the loss around it)."""
    denoiser = gmm.denoiser_fn()

    def apply_fn(params, u, c_noise, *, train=False, rng=None, class_labels=None):
        sigma = _sigma_of_c_noise(p, c_noise)
        c_skip, c_out, c_in, _ = p.coefficients(sigma)
        x = u / c_in[:, None]
        return (denoiser(x, sigma) - c_skip[:, None] * x) / c_out[:, None] + perturbation * u

    return apply_fn


@pytest.mark.slow
@pytest.mark.parametrize("sde_name", list(ALL_SDES))
@pytest.mark.parametrize("kind", KINDS)
def test_wrapped_exact_denoiser_gives_the_exact_score(kind, sde_name):
    sde, gmm = ALL_SDES[sde_name], mixture_2d()
    p = score_fn.Preconditioning(kind)
    apply_fn = exact_network(p, gmm)
    x = 2 * jax.random.normal(jax.random.key(0), (256, 2))
    sigma = jnp.exp(jax.random.uniform(jax.random.key(1), (256,), minval=-3.0, maxval=3.0))
    d = score_fn.get_denoiser(apply_fn, p)(None, x, sigma)
    np.testing.assert_allclose(d, gmm.denoiser_fn()(x, sigma), rtol=1e-4, atol=1e-4)
    t = jax.random.uniform(jax.random.key(2), (256,), minval=0.05, maxval=1.0)
    alpha, std = sde.marginal_coeffs(t)
    xt = alpha[:, None] * gmm.sample(jax.random.key(3), 256) + std[:, None] * x
    score = score_fn.get_score_fn(sde, apply_fn, preconditioning=p)(None, xt, t)
    exact = gmm.score_fn(sde)(xt, t)
    np.testing.assert_allclose(score, exact, rtol=2e-3, atol=2e-3 / float(std.min()))


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_edm_loss_is_minimal_at_the_exact_denoiser(kind):
    """L(delta) for F_exact + delta * input, with common random numbers: a parabola whose minimum
    is at delta = 0 up to Monte-Carlo error, rising on both sides (measured: +5% at delta = +-0.2
    for 'edm', the irreducible part E[lambda Var(x_0 | x~)] being most of the loss)."""
    gmm, p = mixture_2d(), score_fn.Preconditioning(kind)
    batch = {"x": gmm.sample(jax.random.key(0), 16384)}
    key = jax.random.key(1)

    def loss(delta):
        fn = losses.get_edm_loss_fn(exact_network(p, gmm, delta), p, train=False)
        return float(fn(None, key, batch))

    deltas = np.array([-0.2, -0.1, 0.0, 0.1, 0.2])
    values = np.array([loss(d) for d in deltas])
    a, b, _ = np.polyfit(deltas, values, 2)
    assert a > 0 and abs(-b / (2 * a)) < 0.02, (values, a, b)
    assert values[2] == values.min() and min(values[0], values[-1]) > 1.02 * values[2], values


def test_edm_loss_weight_makes_the_network_target_unit_scale():
    """lambda(sigma) = 1 / c_out^2: with F = 0 the 'edm' loss is E[c_skip - 1)^2 |x0|^2 +
    c_skip^2 sigma^2 D] / c_out^2 per example; at sigma_data = the data's std it is ~D per dim."""
    p = score_fn.Preconditioning("edm", sigma_data=1.0)
    x = jax.random.normal(jax.random.key(0), (50_000, 2))  # unit variance, like sigma_data
    zero = lambda params, u, c, **kw: jnp.zeros_like(u)
    value = losses.get_edm_loss_fn(zero, p, train=False)(None, jax.random.key(1), {"x": x})
    # D = c_skip (x + n): D - x = (c_skip - 1) x + c_skip n; E|.|^2 = ((c_skip-1)^2 + c_skip^2
    # sigma^2) per dim = sigma^2 / (1 + sigma^2) = c_out^2 (sigma_data = 1): loss = 1 per dim.
    np.testing.assert_allclose(float(value), 1.0, rtol=0.02)
