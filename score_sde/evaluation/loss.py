"""Eval loss: the training objective's mean over a few held-out batches.

    loss = mean_i loss_fn(fold_in(key, i), batch_i),   i < num_batches

`loss_fn(key, batch) -> scalar` is the denoising score matching loss with the parameters
bound (no EMA update, no dropout); batches are global, sharded like training batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import jax
import numpy as np

from score_sde import parallel


def mean_loss(
    loss_fn: Callable[[jax.Array, dict], jax.Array],
    batches: Iterable[dict],
    key: jax.Array,
    num_batches: int,
) -> float:
    """Mean of `loss_fn(fold_in(key, i), batch_i)` over the first `num_batches` batches."""
    values = []
    for i, batch in zip(range(num_batches), batches, strict=False):
        values.append(float(parallel.to_host(loss_fn(jax.random.fold_in(key, i), batch))))
    if not values:
        raise ValueError("the eval loss got no batch: the eval split is empty")
    return float(np.mean(values))
