"""Inpainting and colorization against exact conditionals of Gaussian mixtures.

The conditional of hidden given known coordinates of a mixture is a mixture (closed form). The
paper's replacement scheme is biased; these tests pin its bias at the measured level (numbers in
the comments: weights are the fraction of samples nearest each conditional component), and check
that the exact conditional score reproduces the conditional within Monte-Carlo error.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from score_sde import controllable as C
from score_sde.gmm import GaussianMixture
from tests.oracles import ALL_SDES, assert_matches_mixture, mixture_2d, mixture_nd

N = 3000


def _errors(x_hidden, cond):
    """(max |weight error|, max |mean error|, max |cov error|) of samples vs a mixture."""
    x = np.asarray(x_hidden, np.float64)
    resp = np.asarray(cond.responsibilities(jnp.asarray(x, jnp.float32)))
    freq = np.bincount(resp.argmax(-1), minlength=len(cond.weights)) / len(x)
    return (
        float(np.abs(freq - np.asarray(cond.weights)).max()),
        float(np.abs(x.mean(0) - np.asarray(cond.mean())).max()),
        float(np.abs(np.atleast_2d(np.cov(x.T)) - np.asarray(cond.covariance())).max()),
    )


def _inpaint_problem(dim):
    """(mixture, known [D] bool, y [D_known]) with a conditional that keeps two components."""
    if dim == 2:
        return mixture_2d(), np.array([True, False]), jnp.array([-0.4])  # exact w (0.997, 0.003)
    gmm = mixture_nd(8)
    known = np.arange(8) < 4
    y = (0.5 * gmm.means[1] + 0.5 * gmm.means[2])[:4]  # exact weights (0, 0.582, 0.418)
    return gmm, known, y


@functools.cache
def _inpaint(method, sde_name, dim, exact, predictor="reverse_diffusion", corrector="none"):
    sde = ALL_SDES[sde_name]
    gmm, known, y = _inpaint_problem(dim)
    y_full = jnp.zeros(dim).at[np.flatnonzero(known)].set(y)
    mask = jnp.asarray(known, jnp.float32)
    if method == "pc":
        sampler = C.get_pc_inpainter(sde, (N, dim), predictor, corrector, snr=0.1)
    else:
        sampler = C.get_ode_inpainter(sde, (N, dim))
    score = gmm.conditional_score_fn(sde, known, y) if exact else gmm.score_fn(sde)
    x, _ = jax.jit(sampler, static_argnums=1)(jax.random.key(0), score, y_full, mask)
    x = np.asarray(x)
    np.testing.assert_array_equal(x[:, known], np.broadcast_to(np.asarray(y), (N, known.sum())))
    return x[:, ~known], gmm.conditional(known, y)


@pytest.mark.slow
def test_conditional_mixture_matches_bayes_rule():
    gmm, known, y = _inpaint_problem(8)
    cond = gmm.conditional(known, y)
    # log p(y, h) - log p(y) = log p(h | y) at random h.
    h = jax.random.normal(jax.random.key(0), (5, 4))
    full = jnp.concatenate([jnp.broadcast_to(y, (5, 4)), h], axis=1)
    marg = GaussianMixture(gmm.weights, gmm.means[:, :4], gmm.covs[:, :4, :4]).log_prob(y[None])
    np.testing.assert_allclose(cond.log_prob(h), gmm.log_prob(full) - marg, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(cond.weights, [0.0, 0.582, 0.418], atol=2e-3)


# Measured replacement-scheme errors (N = 3000, fixed seeds; max |weight|, |mean|, |cov| error; the
# weights are the fraction of samples nearest each conditional component; MC error ~0.01):
# 2-D, y = -0.4 (exact weights 0.997 / 0.003, mean -0.364, var 0.033):
#   PC vp rd+none 0.17, 0.22, 0.13 | PC ve rd+langevin 0.09, 0.11, 0.09 | ODE vp 0.35, 0.32, 0.21
# 8-D, 4 known (exact weights 0 / 0.582 / 0.418):
#   PC vp rd+none 0.14, 0.38, 0.14 | PC ve rd+langevin 0.15, 0.42, 0.03 | ODE ve 0.09, 0.29, 0.24
# The replacement samples lean towards the prior's component weights. Bounds: measured + 25%.
REPLACEMENT_BIAS = {  # (method, sde, dim, corrector): (weight, mean, cov) upper bounds
    ("pc", "vp", 2, "none"): (0.21, 0.28, 0.17),
    ("pc", "ve", 2, "langevin"): (0.12, 0.14, 0.11),
    ("ode", "vp", 2, "none"): (0.43, 0.40, 0.27),
    ("pc", "vp", 8, "none"): (0.18, 0.47, 0.17),
    ("pc", "ve", 8, "langevin"): (0.19, 0.53, 0.04),
    ("ode", "ve", 8, "none"): (0.11, 0.37, 0.30),
}


@pytest.mark.slow
@pytest.mark.parametrize("method,sde_name,dim,corrector", list(REPLACEMENT_BIAS))
def test_replacement_inpainting_bias_is_bounded(method, sde_name, dim, corrector):
    xh, cond = _inpaint(method, sde_name, dim, False, corrector=corrector)
    errors = _errors(xh, cond)
    bounds = REPLACEMENT_BIAS[(method, sde_name, dim, corrector)]
    assert all(e <= b for e, b in zip(errors, bounds, strict=True)), (errors, bounds)
    # Still visibly biased: if this fails the scheme improved; update the numbers above.
    assert errors[0] > 0.05, errors


@pytest.mark.parametrize(
    "method,sde_name,dim",
    [("pc", "vp", 2), ("pc", "ve", 2), ("ode", "vp", 2), ("pc", "subvp", 8), ("ode", "ve", 8)],
)
def test_exact_conditional_score_reproduces_conditional(method, sde_name, dim):
    xh, cond = _inpaint(method, sde_name, dim, True)
    assert_matches_mixture(xh, cond, slack=0.01 if dim == 2 else 0.03)


# ---------------------------------------------------------------------------------- colorization


def _color_problem():
    """Mixture of 1x2 RGB images (D = 6) and one grayscale observation with two live components."""
    gmm = mixture_nd(6, seed=1)
    x = gmm.sample(jax.random.key(2), 4)[1].reshape(1, 1, 2, 3)
    gray = x.mean(-1, keepdims=True)  # [1, 1, 2, 1]
    q = np.kron(np.eye(2, dtype=np.float32), C.COLOR_MATRIX)
    known = np.array([True, False, False, True, False, False])
    cond = gmm.transformed(q).conditional(known, np.sqrt(3) * gray.ravel())
    return gmm, gray, q, known, cond


def test_color_matrix_is_orthogonal_with_gray_first():
    m = C.COLOR_MATRIX.astype(np.float64)
    np.testing.assert_allclose(m.T @ m, np.eye(3), atol=1e-6)
    np.testing.assert_allclose(m[:, 0], np.full(3, 1 / np.sqrt(3)), atol=1e-7)
    x = jax.random.normal(jax.random.key(0), (2, 4, 4, 3))
    np.testing.assert_allclose(C.COLOR.inverse(C.COLOR.forward(x)), x, atol=1e-6)


@functools.cache
def _colorize(method, exact):
    sde = ALL_SDES["vp"]
    gmm, gray, q, known, cond = _color_problem()
    shape = (N, 1, 2, 3)
    if method == "pc":
        colorizer = C.get_pc_colorizer(sde, shape, "reverse_diffusion", "langevin", snr=0.1)
    else:
        colorizer = C.get_ode_colorizer(sde, shape)
    yk = np.sqrt(3) * np.asarray(gray).ravel()
    score = gmm.conditional_score_fn(sde, known, yk, C.COLOR_MATRIX) if exact else gmm.score_fn(sde)
    x, _ = jax.jit(colorizer, static_argnums=1)(
        jax.random.key(3), score, jnp.broadcast_to(gray, shape[:-1] + (1,))
    )
    x = np.asarray(x)
    np.testing.assert_allclose(
        x.mean(-1, keepdims=True), np.broadcast_to(gray, shape[:-1] + (1,)), atol=2e-6
    )
    u = x.reshape(N, 6) @ q
    return u[:, ~known], cond


# Measured (weight, mean, cov) errors of the replacement colorizer (exact weights 0.656 / 0.344):
# PC vp rd+langevin 0.22, 0.59, 0.11 | ODE vp 0.26, 0.70, 0.06. Bounds: measured + 25%.
COLOR_BIAS = {"pc": (0.27, 0.74, 0.14), "ode": (0.32, 0.87, 0.08)}


@pytest.mark.slow
@pytest.mark.parametrize("method", ["pc", "ode"])
def test_colorization_keeps_gray_and_bias_is_bounded(method):
    uh, cond = _colorize(method, False)
    errors = _errors(uh, cond)
    bounds = COLOR_BIAS[method]
    assert all(e <= b for e, b in zip(errors, bounds, strict=True)), (errors, bounds)
    assert errors[0] > 0.05, errors  # visibly biased (else update the numbers above)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["pc", "ode"])
def test_colorization_with_exact_conditional_score(method):
    uh, cond = _colorize(method, True)
    assert_matches_mixture(uh, cond, slack=0.02)


# ---------------------------------------------------------------------------------- plumbing


def test_sharded_inpainting_equals_unsharded():
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    sde, gmm = ALL_SDES["ve"], mixture_2d()
    # eigh hoisted out of the traced score: a LAPACK call inside a program sharded over fake CPU
    # devices hangs now and then (seen with 64-D mixtures)
    score = gmm.score_fn(sde)
    mesh = Mesh(np.array(jax.devices()[:4]), ("data",))
    y = jnp.broadcast_to(jnp.array([-0.4, 0.0]), (64, 2))
    mask = jnp.array([1.0, 0.0])
    out = {}
    for name, shard in (("one", None), ("four", NamedSharding(mesh, P("data")))):
        sampler = C.get_pc_inpainter(sde, (64, 2), sharding=shard)
        out[name] = jax.jit(sampler, static_argnums=1)(jax.random.key(5), score, y, mask)[0]
    assert len(out["four"].sharding.device_set) == 4
    np.testing.assert_allclose(out["one"], out["four"], rtol=1e-4, atol=1e-4)


def test_errors():
    sde = ALL_SDES["vp"]
    with pytest.raises(ValueError, match="broadcast"):
        C.get_pc_inpainter(sde, (4, 2))(jax.random.key(0), lambda x, t: -x, jnp.zeros(3), 1.0)
    with pytest.raises(ValueError, match="RGB"):
        C.get_pc_colorizer(sde, (4, 8, 8, 1))
    with pytest.raises(ValueError, match="valid names"):
        C.get_pc_inpainter(sde, (4, 2), "heun")
