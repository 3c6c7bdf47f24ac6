"""Snapshots of a run's power-function EMAs (score_sde.phema), beside its checkpoints:

    <workdir>/phema/<step>/std-<std>.npz    the EMA of relative width <std> after <step> steps: its
                                            arrays by leaf name ('hidden.0.kernel.value'), and
                                            __step__ and __std__

Checkpoint retention (config.training.keep_checkpoints) only deletes under checkpoints/, so every
snapshot stays for the reconstruction (`python -m score_sde.phema`). Each file is written whole
and atomically through store.fs (a disk or a bucket); a rewritten step (a resumed run replays the
same steps) gets the same bytes. The .npz (zip) format keeps a CRC-32 of every array, checked
when it is read.
"""

from __future__ import annotations

import io
import os
import zipfile
from typing import Any, NamedTuple

import jax
import numpy as np

from score_sde.store import fs

DIR = "phema"
_META = ("__step__", "__std__")


class Snapshot(NamedTuple):
    step: int
    std: float
    path: str


def file_name(std: float) -> str:
    """'std-0.05.npz': repr round-trips the float exactly."""
    return f"std-{float(std)!r}.npz"


def _named(tree: Any) -> dict[str, Any]:
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(p, simple=True, separator="."): x for p, x in flat}


def write(workdir: str, step: int, std: float, tree: Any) -> str:
    """Writes `tree` (host arrays) as the snapshot of width `std` at `step`; returns its path."""
    path = os.path.join(os.fspath(fs.path(workdir)), DIR, str(step), file_name(std))
    arrays = {n: np.asarray(x) for n, x in _named(tree).items()}
    fs.save_npz(path, __step__=np.int64(step), __std__=np.float64(std), **arrays)
    return path


def listing(workdir: str) -> list[Snapshot]:
    """Every snapshot file under <workdir>/phema/, sorted by (step, std); other names are
    passed over."""
    root = fs.path(workdir) / DIR
    if not root.is_dir():
        return []
    out = []
    for step_dir in root.iterdir():
        if not step_dir.name.isdigit():
            continue
        for f in step_dir.iterdir():
            name = f.name
            if not (name.startswith("std-") and name.endswith(".npz")):
                continue
            try:
                std = float(name[4:-4])
            except ValueError:
                continue
            out.append(Snapshot(int(step_dir.name), std, os.fspath(f)))
    return sorted(out)


def read(snap: Snapshot, like: Any) -> Any:
    """The snapshot's arrays as a pytree of host numpy arrays structured like `like` (the params'
    tree, abstract or concrete). ValueError naming the file when it is unreadable, damaged (CRC),
    renamed (its step or std are not its name's) or of another network (other leaves or shapes)."""
    try:
        with np.load(io.BytesIO(fs.path(snap.path).read_bytes()), allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"phema snapshot {snap.path} cannot be read ({e}); remove it") from None
    step, std = arrays.pop(_META[0], None), arrays.pop(_META[1], None)
    if step is None or std is None or (int(step), float(std)) != (snap.step, snap.std):
        raise ValueError(
            f"phema snapshot {snap.path} holds step {step} and std {std}, not those of its name "
            "(renamed or copied by hand?); remove it"
        )
    want = {n: tuple(np.shape(x)) for n, x in _named(like).items()}
    have = {n: a.shape for n, a in arrays.items()}
    if want != have:
        other = sorted(set(want) ^ set(have)) or [n for n in want if want[n] != have[n]]
        raise ValueError(
            f"phema snapshot {snap.path} holds another network's arrays than the run's config "
            f"(first difference: {other[0]}); was it copied from another run?"
        )
    leaves, treedef = jax.tree_util.tree_flatten_with_path(like)
    names = [jax.tree_util.keystr(p, simple=True, separator=".") for p, _ in leaves]
    return jax.tree_util.tree_unflatten(treedef, [arrays[n] for n in names])
