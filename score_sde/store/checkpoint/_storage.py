"""A save the storage refuses (full disk, quota, read-only or vanished work directory) as one
StorageError naming the path, the space and the newest checkpoint really written."""

from __future__ import annotations

import contextlib
import logging as py_logging
import os
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from score_sde.store import fs
from score_sde.store.checkpoint import _orbax
from score_sde.store.checkpoint._errors import StorageError
from score_sde.store.checkpoint._layout import PREEMPTION_DIR, SNAPSHOT_DIR

if TYPE_CHECKING:
    from score_sde.store.checkpoint._manager import Checkpoints


@contextlib.contextmanager
def writing(ckpts: Checkpoints) -> Iterator[None]:
    """Turns a failed write of the storage under `ckpts` (a Checkpoints) into one StorageError;
    orbax's thread tracebacks stay off the terminal (absl debug log). Pending saves are let
    finish (or fail) first, so the message names the newest checkpoint really written; the
    partial step directories are removed (orbax never lists them)."""
    try:
        with _orbax.silenced():
            try:
                yield
            except Exception as e:
                if fs.storage_failure(e) is None:
                    raise
                for manager in (ckpts.snapshots, ckpts.preemption):
                    with contextlib.suppress(Exception):
                        manager.wait_until_finished()
                raise
    except Exception as e:
        reason = fs.storage_failure(e)
        if reason is None:
            raise
        # orbax's failed writer tasks log "Task exception was never retrieved" whenever they
        # are collected, possibly after this block: the run ends on this error, so asyncio's
        # logger stays off for the rest of the process
        py_logging.getLogger("asyncio").disabled = True
        m = re.search(r"/(\d+)\.orbax-checkpoint-tmp", str(e))  # orbax writes <step>.orbax-...
        if vanished(ckpts):  # removed under the save (`rm -rf` while it was writing)
            remove_recreated(ckpts.workdir)
            raise StorageError(
                vanished_message(ckpts.workdir, f"step {m[1]}" if m else "a checkpoint")
            ) from None
        what = f"checkpoint step {m[1]}" if m else "a checkpoint"
        raise StorageError(_cannot_write(ckpts, reason, what)) from None


def vanished(ckpts: Checkpoints) -> bool:
    """The local work directory is gone, or another one stands at its path (a remote one has no
    identity to compare: a bucket prefix cannot vanish in a way we could tell)."""
    return ckpts.dir_id is not None and fs.dir_id(ckpts.workdir) != ckpts.dir_id


def remove_recreated(workdir: str) -> None:
    """Undoes what a save did after the work directory vanished under it: orbax created the
    path again for its step. Removed only when it holds nothing but checkpoint directories
    (another program's files there are left alone)."""
    p = fs.path(workdir)
    if fs.is_remote(workdir) or not p.is_dir():
        return
    if {q.name for q in p.iterdir()} <= {SNAPSHOT_DIR, PREEMPTION_DIR}:
        fs.remove_tree(workdir)


def vanished_message(workdir: str, what: str) -> str:
    return (
        f"the work directory {workdir} vanished while this run was using it (removed or "
        f"moved; {what} was not saved, and nothing was recreated in its place). Put it back "
        "(or start afresh in another --workdir) and rerun the same command"
    )


def _cannot_write(ckpts, reason: str, what: str) -> str:
    finished = []  # (step, path) of the step directories orbax finished (renamed from tmp)
    for name in (SNAPSHOT_DIR, PREEMPTION_DIR):
        root = fs.path(os.path.join(ckpts.workdir, name))
        for p in root.iterdir() if root.is_dir() else ():
            if ".orbax-checkpoint-tmp" in p.name:  # partial: give the space back
                with contextlib.suppress(OSError):
                    fs.remove_tree(p)
            elif p.name.isdigit() and ckpts.complete(os.fspath(p)):
                finished.append((int(p.name), os.fspath(p)))
    ckpts.forget_saves_except(finished)
    newest = max(finished)[1] if finished else None
    free = fs.free_space(ckpts.workdir)
    space = "" if free is None else f"; {fs.size_text(free)} free there without its partial files"
    size = fs.tree_size(newest) if newest else 0  # 0 where it cannot be told (remote)
    need = f", and a checkpoint of this run takes {fs.size_text(size)}" if size else ""
    return (
        f"cannot write {what} in {ckpts.workdir} ({reason}){space}{need}. "
        "Make room (or give the work directory a larger disk) and rerun the same command: it "
        "resumes from "
        + (f"the newest checkpoint, {newest}" if newest else "the start (no checkpoint yet)")
        + "; nothing already written was touched"
    )
