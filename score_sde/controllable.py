"""Conditional sampling from an unconditional score: inpainting and colorization (Song et al.
2021, sec. 5 and app. I) by the paper's replacement scheme, with PC or the probability-flow ODE.

Both are one problem: some coordinates of a linear, orthogonal view u = Q^T x of the data are known,
u_known = y on `mask`, and the rest must be sampled from p(u_hidden | y). Because every SDE here is
isotropic and linear, Q commutes with it: u_t = alpha(t) u_0 + std(t) z in the transformed view too.
- inpainting: Q = I, `mask` marks the known pixels;
- colorization: Q acts on the channel axis as COLOR_MATRIX (first column (1, 1, 1) / sqrt(3)), so
  u[..., 0] = sqrt(3) * gray is known and the two chroma channels u[..., 1:] are sampled.

PC (replacement, the hook of the one PC loop `sampling.get_pc_sampler`): after every corrector
and predictor step, the known coordinates of x are replaced by a fresh draw of p_0t(u_t | y) =
N(alpha(t) y, std(t)^2) at the time the step landed on; the noise-free estimate x_mean gets the
mean alpha(t) y, built from the step's own x_mean (the published code built it from the
already-noised sample). The output keeps u_known = y exactly.
ODE: the known coordinates follow y_t = alpha(t) y + std(t) z with one z drawn per sample, and only
the hidden ones are integrated.

The replacement scheme samples the hidden coordinates with grad log p_t(x_hidden, y_t), not the
score of p_t(x_hidden | y); it is an approximation (tests/method/test_controllable.py measures its bias on
Gaussian mixtures). For a Gaussian mixture the exact conditional is a mixture again
(`GaussianMixture.conditional` in score_sde.gmm), whose score
(`GaussianMixture.conditional_score_fn`, with channel_matrix = COLOR_MATRIX for colorization)
plugged into the same samplers gives the exact conditional.

Samplers: `sampler(key, score_fn, y, mask) -> (x [shape], nfe)` for `get_pc_inpainter`,
`get_ode_inpainter`, and `colorizer(key, score_fn, gray) -> (x, nfe)` for the colorizers; y and mask
broadcast to `shape` (mask: 1 = known, 0 = to sample).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from score_sde import sampling
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


NAMED_MASKS = ("keep_top", "keep_left", "keep_border", "keep_random")  # named_mask
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
    t_{i+1} (the hook of `sampling.get_pc_sampler`). The final output has u_known = y exactly.
    """

    def replace(key, x, x_mean, t, cond):
        """u_known <- alpha(t) y + std(t) z in x, <- alpha(t) y in x_mean (x, x_mean: [shape])."""
        y, mask = cond
        y_mean, std = sde.marginal_prob(y, t)
        y_t = y_mean + batch_mul(std, jax.random.normal(key, x.shape, x.dtype))
        x = transform.inverse(mask * y_t + (1 - mask) * transform.forward(x))
        x_mean = transform.inverse(mask * y_mean + (1 - mask) * transform.forward(x_mean))
        return x, x_mean

    pc = sampling.get_pc_sampler(
        sde,
        shape,
        predictor,
        corrector,
        snr=snr,
        n_steps=n_steps,
        probability_flow=probability_flow,
        denoise=denoise,
        eps=eps,
        langevin_norm=langevin_norm,
        sharding=sharding,
        hook=replace,
    )

    def sampler(key, score_fn, y, mask):
        _check_shapes(shape, y, mask)
        y = jnp.broadcast_to(jnp.asarray(y, jnp.float32), shape)
        mask = jnp.broadcast_to(jnp.asarray(mask, jnp.float32), shape)
        x, nfe = pc(key, score_fn, (y, mask))
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


def named_mask(name: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """An inpainting mask [H, W, 1] (1 = known) by name (config.condition.mask):
    keep_top / keep_left (that half known), keep_border (the central half of each side unknown),
    keep_random (each pixel known with probability 1/2, drawn from `seed`)."""
    h, w = shape[0], shape[1]
    m = np.zeros((h, w, 1), np.float32)
    match name:
        case "keep_top":
            m[: h // 2] = 1
        case "keep_left":
            m[:, : w // 2] = 1
        case "keep_border":
            m[:] = 1
            m[h // 4 : h - h // 4, w // 4 : w - w // 4] = 0
        case "keep_random":
            m[:] = np.random.default_rng(seed).random((h, w, 1)) < 0.5
        case _:
            raise ValueError(
                f"config.condition.mask ({name!r}) is neither a file nor a named mask "
                f"({', '.join(NAMED_MASKS)})"
            )
    return m


__all__ = [
    "COLOR",
    "COLOR_MATRIX",
    "IDENTITY",
    "Orthogonal",
    "get_ode_colorizer",
    "get_ode_conditional_sampler",
    "get_ode_inpainter",
    "get_pc_colorizer",
    "get_pc_conditional_sampler",
    "get_pc_inpainter",
    "gray_channel",
    "named_mask",
]
