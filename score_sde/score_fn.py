"""Turning a network's output into a score, for each SDE and for continuous or discrete time.

A network is `apply_fn(params, x, labels, *, train, rng, class_labels) -> out` with out like x, where
`labels` [B] is the noise-level conditioning the published models were trained with:
- VP / sub-VP, continuous: labels = 999 t; the network predicts the noise z, so score = -out / std(t).
- VP, discrete (DDPM): labels = (N - 1) t; std = sqrt(1 - alpha_bar_i) at i = floor((N - 1) t).
- VE, continuous: labels = sigma(t); the network output is the score (scale_by_sigma inside it).
- VE, discrete (SMLD): labels = round((T - t)(N - 1)), the index into descending noise levels.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from score_sde.sde import SDE, VESDE, VPSDE, SubVPSDE, batch_mul

ApplyFn = Callable[..., jax.Array]


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
        case _:
            raise ValueError(f"no score parameterization for SDE {type(sde).__name__}")


def get_score_fn(sde: SDE, apply_fn: ApplyFn, *, continuous: bool = True):
    """Wraps a network into `score_apply(params, x, t, *, train=False, rng=None, class_labels=None)`.

    Returns the score grad_x log p_t(x) [B, ...] for x [B, ...] and t [B].
    """
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
