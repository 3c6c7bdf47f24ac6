"""Turning a network's output into a score, for each SDE and for continuous or discrete time.

A network is `apply_fn(params, x, labels, *, train, rng, class_labels) -> out` with out like x, where
`labels` [B] is the noise-level conditioning the published models were trained with:
- VP / sub-VP, continuous: labels = 999 t; the network predicts the noise z, so score = -out / std(t).
- VP, discrete (DDPM): labels = (N - 1) t; std = sqrt(1 - alpha_bar_i) at i = floor((N - 1) t).
- VE, continuous: labels = sigma(t); the network output is the score (scale_by_sigma inside it).
- VE, discrete (SMLD): labels = round((T - t)(N - 1)), the index into descending noise levels.
- Flow paths (sde.FlowPath): labels = 999 t; the network predicts the velocity
  v = alpha' x_0 + std' z of x_t = alpha x_0 + std z (linear path: z - x_0), and
  `velocity_to_score` / `velocity_to_denoiser` turn it into the score and E[x_0 | x_t].
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from score_sde.sde import SDE, VESDE, VPSDE, FlowPath, SubVPSDE, batch_mul

ApplyFn = Callable[..., jax.Array]
PRECONDITIONINGS = ("none", "edm", "vp", "ve", "consistency")  # as score_sde.config


@dataclasses.dataclass(frozen=True)
class Preconditioning:
    """EDM's network preconditioning (Karras et al. 2022, Table 1): a network F becomes the
    denoiser D(x~; sigma) = c_skip x~ + c_out F(c_in x~; c_noise), in the scaled coordinates
    x~ = x_t / alpha(t), sigma = std(t) / alpha(t) of any linear SDE.

    - 'edm': c_skip = sd^2 / (sigma^2 + sd^2), c_out = sigma sd / sqrt(sigma^2 + sd^2),
      c_in = 1 / sqrt(sigma^2 + sd^2), c_noise = ln(sigma) / 4 (sd = sigma_data);
    - 'vp': 1, -sigma, 1 / sqrt(sigma^2 + 1), 999 t (t the VP SDE's time of sigma, beta_min ->
      beta_max): score_sde's DDPM++ (VP) parameterization;
    - 've': 1, sigma, 1, ln(sigma / 2): score_sde's NCSN++ (VE) parameterization;
    - 'consistency' (Song et al. 2023): c_skip = sd^2 / ((sigma - sigma_min)^2 + sd^2),
      c_out = sd (sigma - sigma_min) / sqrt(sigma^2 + sd^2), c_in as 'edm', c_noise = 1000 ln(sigma)
      / 4 (the consistency models' own scale, for a positional embedding): D is then a
      consistency function, D(x~; sigma_min) = x~ (score_sde.consistency).
    The EDM loss weights each sigma by 1 / c_out^2.
    """

    kind: str = "edm"
    sigma_data: float = 0.5
    beta_min: float = 0.1
    beta_max: float = 20.0
    sigma_min: float = 0.002  # 'consistency': the boundary sigma_min

    def __post_init__(self):
        if self.kind not in PRECONDITIONINGS[1:]:
            raise ValueError(
                f"config.model.preconditioning ({self.kind!r}) must be one of {PRECONDITIONINGS}"
            )

    def coefficients(self, sigma: jax.Array):
        """(c_skip, c_out, c_in, c_noise), each shaped like sigma [B]."""
        match self.kind:
            case "edm":
                sd2, total = self.sigma_data**2, sigma**2 + self.sigma_data**2
                return (
                    sd2 / total,
                    sigma * self.sigma_data / jnp.sqrt(total),
                    total**-0.5,
                    (jnp.log(sigma) / 4),
                )
            case "consistency":
                sd, dev = self.sigma_data, sigma - self.sigma_min
                total = sigma**2 + sd**2
                return (
                    sd**2 / (dev**2 + sd**2),
                    sd * dev / jnp.sqrt(total),
                    total**-0.5,
                    250.0 * jnp.log(sigma),
                )
            case "vp":
                b = jnp.log1p(sigma**2)  # the VP SDE's integrated beta at t(sigma)
                slope = self.beta_max - self.beta_min
                t = 2 * b / (self.beta_min + jnp.sqrt(self.beta_min**2 + 2 * slope * b))
                return jnp.ones_like(sigma), -sigma, (sigma**2 + 1) ** -0.5, 999.0 * t
            case _:
                return jnp.ones_like(sigma), sigma, jnp.ones_like(sigma), jnp.log(sigma / 2)


def get_denoiser(apply_fn: ApplyFn, preconditioning: Preconditioning):
    """`denoise_apply(params, x~ [B, ...], sigma [B], *, train, rng, class_labels)` -> D, the
    preconditioned network's estimate of E[x_0 | x~]."""

    def denoise_apply(params, x, sigma, *, train=False, rng=None, class_labels=None):
        c_skip, c_out, c_in, c_noise = preconditioning.coefficients(sigma)
        out = apply_fn(
            params, batch_mul(c_in, x), c_noise, train=train, rng=rng, class_labels=class_labels
        )
        return batch_mul(c_skip, x) + batch_mul(c_out, out)

    return denoise_apply


def _path_terms(sde: SDE, t: jax.Array):
    """(alpha, std, alpha', std', det = alpha std' - std alpha'), each [B]."""
    alpha, std = sde.marginal_coeffs(t)
    d_alpha, d_std = sde.coeff_derivatives(t)
    return alpha, std, d_alpha, d_std, alpha * d_std - std * d_alpha


def velocity_to_noise(sde: SDE, x: jax.Array, t: jax.Array, v: jax.Array) -> jax.Array:
    """E[z | x_t] [B, ...] from the velocity v [B, ...]: solving x = alpha x_0 + std z,
    v = alpha' x_0 + std' z gives z = (alpha v - alpha' x) / det (stable at alpha -> 0)."""
    alpha, _, d_alpha, _, det = _path_terms(sde, t)
    return batch_mul(alpha / det, v) - batch_mul(d_alpha / det, x)


def velocity_to_score(sde: SDE, x: jax.Array, t: jax.Array, v: jax.Array) -> jax.Array:
    """The score grad log p_t(x) [B, ...] = -E[z | x_t] / std of a velocity v [B, ...]."""
    return batch_mul(-1.0 / sde.marginal_coeffs(t)[1], velocity_to_noise(sde, x, t, v))


def velocity_to_denoiser(sde: SDE, x: jax.Array, t: jax.Array, v: jax.Array) -> jax.Array:
    """E[x_0 | x_t] [B, ...] = (std' x - std v) / det of a velocity v [B, ...]."""
    _, std, _, d_std, det = _path_terms(sde, t)
    return batch_mul(d_std / det, x) - batch_mul(std / det, v)


def score_to_velocity(sde: SDE, x: jax.Array, t: jax.Array, score: jax.Array) -> jax.Array:
    """The velocity alpha' E[x_0 | x_t] + std' E[z | x_t] [B, ...] of a score [B, ...] (the
    inverse of velocity_to_score; it divides by alpha, so it is ill-conditioned as alpha -> 0)."""
    alpha, std, d_alpha, d_std, _ = _path_terms(sde, t)
    z = batch_mul(-std, score)
    x0 = batch_mul(1.0 / alpha, x - batch_mul(std, z))
    return batch_mul(d_alpha, x0) + batch_mul(d_std, z)


def get_velocity_fn(sde: SDE, apply_fn: ApplyFn):
    """`velocity_apply(params, x, t, *, train, rng, class_labels)` -> the network's velocity
    [B, ...] at x [B, ...], t [B] (a flow-matching network, conditioned on 999 t)."""
    if not isinstance(sde, FlowPath):
        raise ValueError(
            f"a velocity network needs a flow path (config.training.sde 'flow' or "
            f"'cosine_flow'), not {type(sde).__name__}"
        )

    def velocity_apply(params, x, t, *, train=False, rng=None, class_labels=None):
        labels = noise_labels(sde, t)
        return apply_fn(params, x, labels, train=train, rng=rng, class_labels=class_labels)

    return velocity_apply


def noise_labels(sde: SDE, t: jax.Array, *, continuous: bool = True) -> jax.Array:
    """The float labels [B] a network is conditioned on at times t [B]."""
    match sde:
        case VPSDE() | SubVPSDE():
            if continuous:
                return t * 999.0
            if isinstance(sde, SubVPSDE):
                raise ValueError(
                    "discrete-time score models exist for the VP (DDPM) and VE (SMLD) SDEs only; "
                    "set config.training.continuous=True for sub-VP"
                )
            return t * (sde.N - 1)
        case VESDE():
            if continuous:
                return sde.marginal_coeffs(t)[1]
            return jnp.round((sde.T - t) * (sde.N - 1))
        case FlowPath():
            if not continuous:
                raise ValueError(
                    "a flow path is a continuous-time model; set config.training.continuous=True"
                )
            return t * 999.0
        case _:
            raise ValueError(f"no score parameterization for SDE {type(sde).__name__}")


def get_score_fn(
    sde: SDE,
    apply_fn: ApplyFn,
    *,
    continuous: bool = True,
    preconditioning: Preconditioning | None = None,
):
    """Wraps a network into `score_apply(params, x, t, *, train=False, rng=None, class_labels=None)`.

    Returns the score grad_x log p_t(x) [B, ...] for x [B, ...] and t [B]. On a flow path the
    network predicts the velocity (velocity_to_score). With a
    `preconditioning` the network is EDM's F and the score comes from its denoiser:
    score = (alpha D(x / alpha; sigma) - x) / std^2 (Tweedie's formula).
    """
    if preconditioning is not None:
        if not continuous:
            raise ValueError(
                "a preconditioned network (config.model.preconditioning) is a continuous-time "
                "model; set config.training.continuous=True"
            )
        denoise_apply = get_denoiser(apply_fn, preconditioning)

        def precond_score_apply(params, x, t, *, train=False, rng=None, class_labels=None):
            alpha, std = sde.marginal_coeffs(t)
            d = denoise_apply(
                params,
                batch_mul(1.0 / alpha, x),
                std / alpha,
                train=train,
                rng=rng,
                class_labels=class_labels,
            )
            return batch_mul(1.0 / std**2, batch_mul(alpha, d) - x)

        return precond_score_apply
    if isinstance(sde, FlowPath):
        if not continuous:
            raise ValueError(
                "a flow path is a continuous-time model; set config.training.continuous=True"
            )
        velocity_apply = get_velocity_fn(sde, apply_fn)

        def flow_score_apply(params, x, t, *, train=False, rng=None, class_labels=None):
            v = velocity_apply(params, x, t, train=train, rng=rng, class_labels=class_labels)
            return velocity_to_score(sde, x, t, v)

        return flow_score_apply
    predicts_noise = isinstance(sde, VPSDE | SubVPSDE)

    def score_apply(params, x, t, *, train=False, rng=None, class_labels=None):
        labels = noise_labels(sde, t, continuous=continuous)
        out = apply_fn(params, x, labels, train=train, rng=rng, class_labels=class_labels)
        if not predicts_noise:
            return out
        if continuous:
            std = sde.marginal_coeffs(t)[1]
        else:
            std = jnp.asarray(sde.sqrt_1m_alphas_cumprod, x.dtype)[sde.discrete_index(t)]
        return batch_mul(-1.0 / std, out)

    return score_apply


def params_score_fn(score_apply, params, *, class_labels=None):
    """Binds params (and optional class labels [B]) into a sampler's `score_fn(x, t)`."""
    return lambda x, t: score_apply(params, x, t, class_labels=class_labels)
