"""Log-likelihood of a dataset split through the probability-flow ODE, as bits/dim or nats.

Image data: bits/dim over every example of the split (`score_sde.likelihood.bits_per_dim`),
averaged over `num_repeats` uniform dequantization draws (one pass of the split each):
    bpd = mean_{r, n} bpd(log p(x_n + u_{r,n})),   results["bpd_per_repeat"][r] = mean_n ...
2-D toys: the mean log-likelihood in nats, beside the best single-Gaussian fit and, where known,
the true density of the test points.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from score_sde import likelihood
from score_sde.evaluation.split import Cache, no_cache, over_split

# logp_fn(key, x [B, ...]) -> {"logp": [B] nats, "nfe": [], and "x": [B, ...] to keep the points}
LogpFn = Callable[[jax.Array, jax.Array], dict[str, jax.Array]]


def log_likelihoods(
    logp_fn: LogpFn,
    epoch: Callable[[int], Iterable[dict[str, np.ndarray]]],
    key: jax.Array,
    *,
    num_repeats: int,
    num_examples: int,
    mesh: Mesh | None = None,
    store: Callable[[int], AbstractContextManager[Cache]] | None = None,
) -> list[dict[str, np.ndarray]]:
    """One `over_split` of `logp_fn` per dequantization draw r < num_repeats: `epoch(r)` gives
    the draw's batches, `fold_in(key, r)` its key; `store(r)`, a context manager, gives the
    draw's cache (a `Rounds` is one)."""
    passes = []
    for r in range(num_repeats):
        with store(r) if store is not None else nullcontext(no_cache) as cache:
            passes.append(
                over_split(
                    logp_fn,
                    epoch(r),
                    jax.random.fold_in(key, r),
                    mesh=mesh,
                    num_examples=num_examples,
                    cache=cache,
                )
            )
    return passes


def summary(passes: list[dict[str, np.ndarray]]) -> dict:
    """Examples per draw, draws, and the mean number of score evaluations per batch."""
    return {
        "likelihood_examples": int(len(passes[0]["logp"])),
        "likelihood_repeats": len(passes),
        "likelihood_nfe_mean": float(np.mean(np.concatenate([p["nfe"] for p in passes]))),
    }


def image_results(passes: list[dict[str, np.ndarray]], num_dims: int, *, centered: bool) -> dict:
    """{"bpd"} over every draw, and {"bpd_per_repeat"} with several draws."""
    logp = np.concatenate([p["logp"] for p in passes])
    bpd = np.asarray(likelihood.bits_per_dim(jnp.asarray(logp), num_dims, centered=centered))
    out: dict[str, float | list[float]] = {"bpd": float(np.mean(bpd))}
    if len(passes) > 1:
        out["bpd_per_repeat"] = [float(v) for v in bpd.reshape(len(passes), -1).mean(1)]
    return out


def toy_results(logp: np.ndarray, x: np.ndarray, fit: np.ndarray, density=None) -> dict:
    """Mean log-likelihood (nats) of the test points `x` [N, 2] under the model (`logp` [N]), the
    Gaussian fitted to `fit` [M, 2] and, if given, the true `density` (`.log_prob`)."""
    from score_sde.data import toy_data

    out = {
        "test_log_likelihood": float(np.mean(logp)),
        "gaussian_fit_log_likelihood": float(
            toy_data.gaussian_fit_log_likelihood(jnp.asarray(fit), jnp.asarray(x))
        ),
    }
    if density is not None:
        out["true_log_likelihood"] = float(np.mean(np.asarray(density.log_prob(jnp.asarray(x)))))
    return out
