"""Per-example values over one pass of a dataset split, padding dropped, batch by batch.

The loop that bits/dim and any per-example metric share: `fn(key_i, x_i)` runs on the global
batch i ([B, ...], sharded over the mesh) with key `fold_in(key, i)`; of its outputs, arrays with
a leading batch axis are per example (masked, concatenated in split order) and scalars are per
batch (stacked). `cache(i, compute)` may keep each batch's result (a resumable eval passes
`Rounds.get`); by default every batch is computed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from score_sde import parallel

Cache = Callable[[int, Callable[[], dict]], dict]


def no_cache(i: int, compute: Callable[[], dict]) -> dict:
    """The default `cache`: computes batch i."""
    return compute()


def global_batch(local: np.ndarray, mesh: Mesh | None) -> jax.Array:
    """Per-process rows -> a global array sharded over `mesh` (a plain array without a mesh)."""
    return jnp.asarray(local) if mesh is None else parallel.global_batch(np.asarray(local), mesh)


def over_split(
    fn: Callable[[jax.Array, jax.Array], dict[str, jax.Array]],
    batches: Iterable[dict[str, np.ndarray]],
    key: jax.Array,
    *,
    mesh: Mesh | None = None,
    num_examples: int = 0,
    cache: Cache = no_cache,
) -> dict[str, np.ndarray]:
    """{name: [N, ...] per-example values, or [num_batches] per-batch scalars} of `fn` over the
    `Dataset.epoch` batches ({"x": [b, ...] per process, "mask": [b]}); stops after
    `num_examples` examples (0: the whole split) and keeps exactly that many rows."""
    parts: list[dict[str, np.ndarray]] = []
    seen = 0
    for i, batch in enumerate(batches):

        def compute(i=i, batch=batch) -> dict:
            x = global_batch(batch["x"], mesh)
            mask = parallel.to_host(global_batch(batch["mask"], mesh)).astype(bool)
            out = parallel.to_host(fn(jax.random.fold_in(key, i), x))
            return {k: v[mask] if np.ndim(v) else v for k, v in out.items()}

        part = cache(i, compute)
        parts.append(part)
        seen += max((len(v) for v in part.values() if np.ndim(v)), default=0)
        if num_examples and seen >= num_examples:
            break
    if not parts:
        raise ValueError("the split has no batch: nothing to evaluate")
    out = {}
    for k, v in parts[0].items():
        if np.ndim(v):
            rows = np.concatenate([p[k] for p in parts])
            out[k] = rows[:num_examples] if num_examples else rows
        else:
            out[k] = np.stack([p[k] for p in parts])
    return out
