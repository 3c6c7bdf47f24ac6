"""Conditional sampling from an unconditional score: inpainting and colorization (Song et al.
2021, sec. 5 and app. I) by the paper's replacement scheme, with PC or the probability-flow ODE.

Both are one problem: some coordinates of a linear, orthogonal view u = Q^T x of the data are known,
u_known = y on `mask`, and the rest must be sampled from p(u_hidden | y). Because every SDE here is
isotropic and linear, Q commutes with it: u_t = alpha(t) u_0 + std(t) z in the transformed view too.
- inpainting: Q = I, `mask` marks the known pixels;
- colorization: Q acts on the channel axis as COLOR_MATRIX (first column (1, 1, 1) / sqrt(3)), so
  u[..., 0] = sqrt(3) * gray is known and the two chroma channels u[..., 1:] are sampled.

PC (replacement): after every corrector and predictor step, the known coordinates of x are
replaced by a fresh draw of p_0t(u_t | y) = N(alpha(t) y, std(t)^2) at the time the step landed
on; the noise-free estimate x_mean gets the mean alpha(t) y, built from the step's own x_mean (the
published code built it from the already-noised sample). The output keeps u_known = y exactly.
ODE: the known coordinates follow y_t = alpha(t) y + std(t) z with one z drawn per sample, and only
the hidden ones are integrated.

The replacement scheme samples the hidden coordinates with grad log p_t(x_hidden, y_t), not the
score of p_t(x_hidden | y); it is an approximation (tests/test_controllable.py measures its bias on
Gaussian mixtures). For a Gaussian mixture the exact conditional is a mixture again
(`conditional_mixture`), whose score (`conditional_score_fn`) plugged into the same samplers gives
the exact conditional.

Samplers: `sampler(key, score_fn, y, mask) -> (x [shape], nfe)` for `get_pc_inpainter`,
`get_ode_inpainter`, and `colorizer(key, score_fn, gray) -> (x, nfe)` for the colorizers; y and mask
broadcast to `shape` (mask: 1 = known, 0 = to sample).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from score_sde import guidance, sampling
from score_sde.gmm import GaussianMixture
from score_sde.sde import SDE, batch_mul
from score_sde.solvers import solve_ode

# Columns: gray (1, 1, 1) / sqrt(3), then two orthonormal chroma directions. u = x @ COLOR_MATRIX
# (the paper's matrix to 4 decimals:
#  [[.5774, -.8165, 0], [.5774, .4082, .7071], [.5774, .4082, -.7071]]).
COLOR_MATRIX = np.array(
    [
        [1 / math.sqrt(3), -2 / math.sqrt(6), 0.0],
        [1 / math.sqrt(3), 1 / math.sqrt(6), 1 / math.sqrt(2)],
        [1 / math.sqrt(3), 1 / math.sqrt(6), -1 / math.sqrt(2)],
    ],
    np.float32,
)


@dataclasses.dataclass(frozen=True)
class Orthogonal:
    """An orthogonal change of coordinates u = forward(x), x = inverse(u) (None: the identity).

    `matrix` [C, C] acts on the last (channel) axis: u[..., j] = sum_i x[..., i] matrix[i, j].
    """

    matrix: np.ndarray | None = None

    def forward(self, x: jax.Array) -> jax.Array:
        if self.matrix is None:
            return x
        return jnp.einsum("...i,ij->...j", x, jnp.asarray(self.matrix, x.dtype))

    def inverse(self, u: jax.Array) -> jax.Array:
        if self.matrix is None:
            return u
        return jnp.einsum("...j,ij->...i", u, jnp.asarray(self.matrix, u.dtype))

    def __hash__(self):
        return hash(None if self.matrix is None else self.matrix.tobytes())

    def __eq__(self, other):
        return isinstance(other, Orthogonal) and hash(self) == hash(other)


IDENTITY = Orthogonal()
COLOR = Orthogonal(COLOR_MATRIX)


def _check_shapes(shape, y, mask):
    for name, a in (("y", y), ("mask", mask)):
        try:
            np.broadcast_shapes(np.shape(a), tuple(shape))
        except ValueError:
            raise ValueError(
                f"{name} of shape {np.shape(a)} does not broadcast to the sample shape "
                f"{tuple(shape)}"
            ) from None


# ------------------------------------------------------------------------------ PC (replacement)


def get_pc_conditional_sampler(
    sde: SDE,
    shape: tuple[int, ...],
    predictor: str = "reverse_diffusion",
    corrector: str = "langevin",
    *,
    transform: Orthogonal = IDENTITY,
    snr: float = 0.16,
    n_steps: int = 1,
    probability_flow: bool = False,
    denoise: bool = True,
    eps: float = 1e-3,
    langevin_norm: str = "batch",
    sharding: jax.sharding.Sharding | None = None,
):
    """PC sampler with the known coordinates (of u = transform.forward(x)) replaced after each step.

    Returns `sampler(key, score_fn, y, mask) -> (x [shape], nfe)`, y and mask in the u view.
    Step i runs the corrector at t_i and replaces the known part by a draw of N(alpha(t_i) y,
    std(t_i)^2); then the predictor from t_i to t_{i+1} (t_N = 0) and the same replacement at
    t_{i+1}. The final output has u_known = y exactly.
    """
    predictor_fn, corrector_fn, nfe = sampling.pc_steps(sde, predictor, corrector, n_steps, eps)

    def sampler(key, score_fn, y, mask):
        _check_shapes(shape, y, mask)
        y = jnp.broadcast_to(jnp.asarray(y, jnp.float32), shape)
        mask = jnp.broadcast_to(jnp.asarray(mask, jnp.float32), shape)
        key, k_prior = jax.random.split(key)
        x = sampling.constrain(sde.prior_sampling(k_prior, shape), sharding)
        timesteps = jnp.concatenate([jnp.linspace(sde.T, eps, sde.N), jnp.zeros((1,))])

        def replace(k, x, x_mean, t):
            y_mean, std = sde.marginal_prob(y, t)
            y_t = y_mean + batch_mul(std, jax.random.normal(k, shape, x.dtype))
            x = transform.inverse(mask * y_t + (1 - mask) * transform.forward(x))
            x_mean = transform.inverse(mask * y_mean + (1 - mask) * transform.forward(x_mean))
            return x, x_mean

        def body(i, carry):
            x, _ = carry
            k_c, k_p, k_rc, k_rp = jax.random.split(jax.random.fold_in(key, i), 4)
            t = jnp.full((shape[0],), timesteps[i], x.dtype)
            t_next = jnp.full((shape[0],), timesteps[i + 1], x.dtype)
            x, x_mean = corrector_fn(k_c, sde, score_fn, x, t, snr, n_steps, langevin_norm)
            x, _ = replace(k_rc, x, x_mean, t)
            x, x_mean = predictor_fn(k_p, sde, score_fn, x, t, probability_flow)
            return replace(k_rp, x, x_mean, t_next)

        x, x_mean = jax.lax.fori_loop(0, sde.N, body, (x, x))
        x = x_mean if denoise else x
        return transform.inverse(mask * y + (1 - mask) * transform.forward(x)), nfe

    return sampler


# ------------------------------------------------------------------------- probability-flow ODE


def get_ode_conditional_sampler(
    sde: SDE,
    shape: tuple[int, ...],
    *,
    transform: Orthogonal = IDENTITY,
    method: str = "tsit5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    eps: float = 1e-3,
    denoise: bool = False,
    max_steps: int = 8192,
    sharding: jax.sharding.Sharding | None = None,
):
    """Probability-flow ODE over the hidden coordinates; the known ones ride on alpha y + std z.

    du_hidden/dt = [Q^T (f(x, t) - g^2 s(x, t) / 2)]_hidden at x = Q (mask y_t + (1 - mask) u),
    from T to eps, with u_hidden(T) ~ prior and one z per sample.
    Returns `sampler(key, score_fn, y, mask) -> (x, nfe)`.
    With `denoise`, one noise-free reverse-diffusion step at eps follows (nfe counts it).
    """
    if not 0 < eps < sde.T:
        raise ValueError(f"eps must lie in (0, T={sde.T}), got {eps!r}")

    def sampler(key, score_fn, y, mask):
        _check_shapes(shape, y, mask)
        y = jnp.broadcast_to(jnp.asarray(y, jnp.float32), shape)
        mask = jnp.broadcast_to(jnp.asarray(mask, jnp.float32), shape)
        k_prior, k_z = jax.random.split(key)
        u = transform.forward(sampling.constrain(sde.prior_sampling(k_prior, shape), sharding))
        z = sampling.constrain(jax.random.normal(k_z, shape), sharding)
        rsde = sde.reverse(score_fn, probability_flow=True)

        def assemble(t, u):
            y_mean, std = sde.marginal_prob(y, t)
            return transform.inverse(mask * (y_mean + batch_mul(std, z)) + (1 - mask) * u)

        def drift(t, u):
            tt = jnp.full((shape[0],), t, u.dtype)
            return (1 - mask) * transform.forward(rsde.sde(assemble(tt, u), tt)[0])

        u, nfe = solve_ode(
            drift, u, sde.T, eps, method=method, rtol=rtol, atol=atol, max_steps=max_steps
        )
        x = assemble(jnp.full((shape[0],), eps, u.dtype), u)
        if denoise:
            _, x = sampling.reverse_diffusion(key, sde, score_fn, x, jnp.full((shape[0],), eps))
            nfe = nfe + 1
        return transform.inverse(mask * y + (1 - mask) * transform.forward(x)), nfe

    return sampler


# ---------------------------------------------------------------------------------- the two tasks


def get_pc_inpainter(sde: SDE, shape, predictor="reverse_diffusion", corrector="langevin", **kw):
    """`inpaint(key, score_fn, x_known [shape], mask [shape]) -> (x, nfe)`: pixels with mask = 1 are
    kept (exactly), the others sampled by the replacement PC sampler."""
    return get_pc_conditional_sampler(sde, shape, predictor, corrector, transform=IDENTITY, **kw)


def get_ode_inpainter(sde: SDE, shape, **kw):
    """`inpaint(key, score_fn, x_known, mask) -> (x, nfe)` with the probability-flow ODE."""
    return get_ode_conditional_sampler(sde, shape, transform=IDENTITY, **kw)


def gray_channel(gray: jax.Array) -> jax.Array:
    """The known decoupled channel sqrt(3) * gray [B, H, W, 1] of a grayscale image
    [B, H, W, 1 or 3] (three channels are averaged: gray = (r + g + b) / 3, in model space)."""
    return math.sqrt(3.0) * jnp.mean(gray, axis=-1, keepdims=True)


def _colorizer(base, shape):
    if len(shape) != 4 or shape[-1] != 3:
        raise ValueError(f"colorization needs RGB images [B, H, W, 3], got sample shape {shape}")
    mask = jnp.asarray([1.0, 0.0, 0.0])

    def colorize(key, score_fn, gray):
        y = jnp.concatenate([gray_channel(gray), jnp.zeros(shape[:-1] + (2,))], axis=-1)
        return base(key, score_fn, y, mask)

    return colorize


def get_pc_colorizer(sde: SDE, shape, predictor="reverse_diffusion", corrector="langevin", **kw):
    """`colorize(key, score_fn, gray [B, H, W, 1 or 3]) -> (x [B, H, W, 3], nfe)`: colors whose
    channel mean equals gray (up to float rounding), by replacement in the decoupled space."""
    base = get_pc_conditional_sampler(sde, shape, predictor, corrector, transform=COLOR, **kw)
    return _colorizer(base, shape)


def get_ode_colorizer(sde: SDE, shape, **kw):
    """`colorize(key, score_fn, gray) -> (x, nfe)` with the probability-flow ODE."""
    return _colorizer(get_ode_conditional_sampler(sde, shape, transform=COLOR, **kw), shape)


# ------------------------------------------------------------------------------ exact (mixtures)


def orthogonal_mixture(gmm: GaussianMixture, q: jax.Array) -> GaussianMixture:
    """The mixture of u = x @ q for x ~ gmm (q [D, D] orthogonal): means mu q, covs q^T S q."""
    q = jnp.asarray(q, gmm.means.dtype)
    return GaussianMixture(gmm.weights, gmm.means @ q, jnp.einsum("ia,kij,jb->kab", q, gmm.covs, q))


def conditional_mixture(gmm: GaussianMixture, known: np.ndarray, y: jax.Array) -> GaussianMixture:
    """p(x_hidden | x_known = y) for x ~ gmm: a mixture over the hidden coordinates.

    known: bool [D] (static); y [D_known]. Component k: N(mu_h + S_hk S_kk^-1 (y - mu_k),
    S_hh - S_hk S_kk^-1 S_kh), weight proportional to w_k N(y; mu_k, S_kk).
    """
    known = np.asarray(known, bool)
    o, h = np.flatnonzero(known), np.flatnonzero(~known)
    s_oo = gmm.covs[:, o][:, :, o]
    s_ho = gmm.covs[:, h][:, :, o]
    s_hh = gmm.covs[:, h][:, :, h]
    diff = jnp.asarray(y)[None] - gmm.means[:, o]  # [K, D_o]
    gain = jnp.linalg.solve(s_oo, jnp.swapaxes(s_ho, 1, 2))  # S_oo^-1 S_oh  [K, D_o, D_h]
    means = gmm.means[:, h] + jnp.einsum("koh,ko->kh", gain, diff)
    covs = s_hh - jnp.einsum("kho,kog->khg", s_ho, gain)
    covs = 0.5 * (covs + jnp.swapaxes(covs, 1, 2))
    log_n = GaussianMixture(gmm.weights, gmm.means[:, o], s_oo).component_terms(
        jnp.asarray(y)[None], 1.0, 0.0
    )[0][0]
    weights = jax.nn.softmax(jnp.log(gmm.weights) + log_n)
    return GaussianMixture(weights, means, covs)


def conditional_score_fn(
    gmm: GaussianMixture,
    sde: SDE,
    known: np.ndarray,
    y: jax.Array,
    transform: Orthogonal = IDENTITY,
) -> Callable:
    """The exact score of p_t(x_hidden | y) as a `score_fn(x [B, ...], t)` for the samplers above
    (x flattened to D; `known` [D] and y [D_known] in the u view; zero on known coordinates).

    For the colorization view, `transform` = COLOR and gmm is the mixture of x (not of u).
    """
    known = np.asarray(known, bool)
    h = np.flatnonzero(~known)

    def score_fn(x, t):
        u = transform.forward(x).reshape(x.shape[0], -1)
        s_u = jnp.zeros_like(u).at[:, h].set(cond_score(u[:, h], t))
        return transform.inverse(s_u.reshape(x.shape))

    d = gmm.dim
    if transform.matrix is not None:
        c = transform.matrix.shape[0]
        q = np.kron(np.eye(d // c, dtype=np.float32), transform.matrix)
        gmm = orthogonal_mixture(gmm, q)
    cond_score = guidance.mixture_score_fn(conditional_mixture(gmm, known, y), sde)
    return score_fn


__all__ = [
    "COLOR",
    "COLOR_MATRIX",
    "IDENTITY",
    "Orthogonal",
    "conditional_mixture",
    "conditional_score_fn",
    "get_ode_colorizer",
    "get_ode_conditional_sampler",
    "get_ode_inpainter",
    "get_pc_colorizer",
    "get_pc_conditional_sampler",
    "get_pc_inpainter",
    "gray_channel",
    "orthogonal_mixture",
]
