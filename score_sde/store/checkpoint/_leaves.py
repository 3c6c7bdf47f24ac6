"""The arrays of a train state: their names, host copies, checksums and finiteness."""

from __future__ import annotations

import zlib
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

# |x| above this in a float array of the state is divergence, not a trained network (squared,
# it overflows float32).
ABSURD = 1e30


def name(path: jax.tree_util.KeyPath) -> str:
    """Dotted name of a leaf, as orbax names it: `params.hidden.0.kernel.value`."""
    parts = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return ".".join(parts)


def named_leaves(tree: Any) -> dict[str, Any]:
    return {name(p): x for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def host(x: ArrayLike) -> np.ndarray | None:
    """The host copy of a leaf (one replica of a replicated array), None when this process does
    not hold all of it."""
    if isinstance(x, jax.Array):
        if x.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        if x.is_fully_addressable:
            return np.asarray(x)
        return None
    return np.asarray(x)


def crc32(a: np.ndarray) -> int:
    return zlib.crc32(cast(Any, np.ascontiguousarray(a).reshape(-1).view(np.uint8)))  # a buffer


def stored_step(state: Any) -> int | None:
    """The step a restored state records (a TrainState's `step`), or None if it has none."""
    step = getattr(state, "step", None)
    if step is None or np.ndim(step) != 0:
        return None
    shards = getattr(step, "addressable_data", None)  # replicated over processes: a local copy
    return int(np.asarray(shards(0) if shards is not None else step))


def checksums(tree: Any) -> dict:
    """{leaf name: {"shape", "dtype", "crc32"}} of the arrays of `tree`; crc32 is None for an array
    spread over several processes (not verified)."""
    out = {}
    for n, x in named_leaves(tree).items():
        a = host(x)
        out[n] = {
            "shape": [int(d) for d in np.shape(x)],
            "dtype": jnp.dtype(x.dtype if a is None else a.dtype).name,
            "crc32": None if a is None else crc32(a),
        }
    return out


def mismatched(restored: Any, sums: dict) -> list[str]:
    """Names of the arrays of `restored` whose bytes do not match their recorded crc32."""
    return [
        n
        for n, x in named_leaves(restored).items()
        if sums[n]["crc32"] is not None
        and (a := host(x)) is not None
        and crc32(a) != sums[n]["crc32"]
    ]


@jax.jit
def _bad_leaves(leaves):
    """[n] bool: leaf i holds NaN, Inf or |x| > ABSURD. One device call for the whole state."""
    return jnp.stack([~jnp.all(jnp.abs(x) <= ABSURD) for x in leaves])


def nonfinite_leaves(tree: Any) -> list[str]:
    """Names of the float arrays of `tree` holding NaN, Inf or |x| > ABSURD."""
    named = {
        n: x
        for n, x in named_leaves(tree).items()
        if jnp.issubdtype(getattr(x, "dtype", np.float32), jnp.inexact)
    }
    if not named:
        return []
    bad = cast(np.ndarray, host(_bad_leaves(list(named.values()))))  # replicated: held here
    return [n for n, b in zip(named, bad, strict=True) if b]


def abstract(tree: Any, dtypes: dict | None = None) -> Any:
    """ShapeDtypeStructs (with shardings) to restore into: the arrays land where `tree` lives;
    `dtypes` ({name: dtype}) overrides the dtype leaf by leaf (the dtype they were saved in)."""

    def one(path, x):
        dtype = (dtypes or {}).get(name(path), x.dtype)
        return jax.ShapeDtypeStruct(x.shape, dtype, sharding=getattr(x, "sharding", None))

    return jax.tree_util.tree_map_with_path(one, tree)
