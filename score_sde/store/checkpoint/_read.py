"""Reading one step directory back, verified: orbax's metadata, then the checksums, then the
arrays, each failure one reason (`Damaged`); a checkpoint of another config is a ValueError."""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from score_sde.store import fs
from score_sde.store.checkpoint import _leaves, _orbax
from score_sde.store.checkpoint._errors import Damaged
from score_sde.store.checkpoint._layout import CHECKSUM_ITEM, LEGACY_ITEM, STATE_ITEM, entries

# Why a step directory that vanished while it was read is skipped: not damage, but a run writing
# beside this reader (an eval or sample job beside a training) deleted it.
REMOVED = (
    "removed while it was read, by a run writing this work directory (its rolling preemption "
    "checkpoint, or config.training.keep_checkpoints)"
)


def removed_while_read(path: str, wait: float = 0.25) -> bool:
    """Whether step directory `path`, found damaged, is gone now or within `wait` seconds (a
    deletion under way when the read failed)."""
    deadline = time.monotonic() + wait
    while True:
        fs.forget_listings(path)
        if not fs.path(path).exists():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def read_step(path: str, like: Any) -> tuple[Any, bool, dict | None]:
    """(the state in step directory `path` shaped and sharded like `like`, whether checksums
    verified it, the identity of the run that wrote it or None). Damaged if it cannot be read
    back intact, ValueError if it was written for another tree than `like`."""
    names, error = _orbax.attempt("unreadable directory", lambda: entries(path))
    if error:
        raise Damaged(error)
    if not names:
        raise Damaged("empty directory, not a checkpoint")
    if STATE_ITEM in names:
        item, legacy = STATE_ITEM, False
    elif LEGACY_ITEM in names:
        item, legacy = LEGACY_ITEM, True
    else:
        raise Damaged(f"no {STATE_ITEM}/ item in it, not a finished checkpoint")
    checkpointer = ocp.Checkpointer(
        ocp.CompositeCheckpointHandler(
            **{item: ocp.StandardCheckpointHandler(), CHECKSUM_ITEM: ocp.JsonCheckpointHandler()}
        )
    )
    try:
        with _orbax.silenced():
            saved = _saved_leaves(checkpointer, path, item)
            doc = None if legacy else _read_checksums(checkpointer, path, saved)
            check_fits(path, saved, like)
            target = _leaves.abstract(like, {n: dtype for n, (_, dtype) in saved.items()})
            args = ocp.args.Composite(**{item: ocp.args.StandardRestore(target)})
            restored, error = _orbax.attempt(
                "unreadable array data", lambda: checkpointer.restore(path, args=args)[item]
            )
            if error:
                raise Damaged(error)
    finally:
        checkpointer.close()
    if doc is not None:
        bad = _leaves.mismatched(restored, doc["leaves"])
        if bad:
            more = f" and {len(bad) - 1} more arrays" if len(bad) > 1 else ""
            raise Damaged(f"checksum mismatch in {bad[0]}{more}")
    state = jax.tree.map(
        lambda x, t: x if x.dtype == t.dtype else x.astype(t.dtype),
        restored,
        _leaves.abstract(like),
    )
    return state, doc is not None, None if doc is None else doc.get("run")


def _saved_leaves(checkpointer, path: str, item: str) -> dict:
    """{leaf name: (shape, dtype)} from orbax's metadata of `item`."""

    def read():
        tree = checkpointer.metadata(path).item_metadata[item]
        leaves = jax.tree_util.tree_flatten_with_path(getattr(tree, "tree", tree))[0]
        return {_leaves.name(p): (tuple(m.shape), jnp.dtype(m.dtype)) for p, m in leaves}

    out, error = _orbax.attempt("unreadable metadata", read)
    if error:
        raise Damaged(error)
    if not out:
        raise Damaged("unreadable metadata (no arrays listed)")
    return out


def _read_checksums(checkpointer, path: str, saved: dict) -> dict:
    """The checksum document {"leaves": {name: {shape, dtype, crc32}}, "run": identity?}."""

    def read():
        args = ocp.args.Composite(**{CHECKSUM_ITEM: ocp.args.JsonRestore()})
        doc = checkpointer.restore(path, args=args)[CHECKSUM_ITEM]
        sums = doc["leaves"]
        return doc, {n: (tuple(v["shape"]), jnp.dtype(v["dtype"])) for n, v in sums.items()}

    value, error = _orbax.attempt("missing or unreadable checksums", read)
    if error:
        raise Damaged(error)
    doc, listed = value
    if listed != saved:
        raise Damaged("its checksums and orbax metadata list different arrays")
    return doc


def check_fits(path: str, saved: dict, like: Any) -> None:
    """ValueError when the checkpoint's leaves or shapes are not those of `like`."""
    want = {n: tuple(np.shape(x)) for n, x in _leaves.named_leaves(like).items()}
    have = {n: shape for n, (shape, _) in saved.items()}
    if want == have:
        return
    only_ckpt = sorted(set(have) - set(want))
    only_here = sorted(set(want) - set(have))
    shapes = [n for n in sorted(set(have) & set(want)) if have[n] != want[n]]
    if shapes:
        n = shapes[0]
        detail = f"{n} has shape {have[n]} in the checkpoint but {want[n]} here"
    else:
        detail = (
            f"{len(only_ckpt)} arrays only in the checkpoint (e.g. "
            f"{only_ckpt[0] if only_ckpt else '-'}), {len(only_here)} only here (e.g. "
            f"{only_here[0] if only_here else '-'})"
        )
    raise ValueError(
        f"checkpoint {path} cannot be restored into this config's train state ({detail}); "
        "it was written with another config: rerun with the config it was trained with "
        "(saved as config.json in the work directory), or use a fresh --workdir"
    )
