"""`Checkpoints`: the snapshot and preemption CheckpointManagers of one work directory, with the
normal save and restore path; each guarantee lives in its own module beside this one."""

from __future__ import annotations

import os
import sys
import time
import weakref
from collections.abc import Callable
from typing import Any, cast

import jax
import numpy as np
import orbax.checkpoint as ocp

from score_sde.store import fs, quiet
from score_sde.store.checkpoint import _leaves, _orbax, _quarantine, _read, _retention, _storage
from score_sde.store.checkpoint._errors import Damaged, DamagedCheckpointError, StorageError
from score_sde.store.checkpoint._layout import (
    CHECKSUM_FORMAT,
    CHECKSUM_ITEM,
    LEGACY_ITEM,
    PREEMPTION_DIR,
    SNAPSHOT_DIR,
    STATE_ITEM,
    entries,
    step_path,
)


def _print_warning(line: str) -> None:
    if jax.process_index() == 0:
        print("warning: " + line, file=sys.stderr, flush=True)


def _any_process(flag: bool) -> bool:
    """True on every process when `flag` is True on any (checkpoint decisions must agree)."""
    if jax.process_count() == 1:
        return flag
    from jax.experimental import multihost_utils

    return bool(np.asarray(multihost_utils.process_allgather(np.int32(flag))).max())


class Checkpoints:
    """Snapshot and preemption CheckpointManagers over one work directory; a context manager
    (`with Checkpoints(workdir) as ckpts:`) that finishes pending saves and closes on exit.

    `warn(line)` receives the one line per checkpoint problem (a skipped damaged checkpoint, one
    without checksums restored unverified, a damaged one moved aside to be rewritten); default:
    stderr of process 0.
    After a restore, `last_restored_step` / `last_restored_path` say which checkpoint was used,
    `last_restored_identity` what run wrote it (the `identity` dict its writer set; None for
    checkpoints written without one), and `skipped` lists (path, reason) of the newer ones that
    were not. Set `identity` (a JSON-able dict: score_sde.run.identity) to record it in every save.
    """

    def __init__(
        self, workdir: str, *, read_only: bool = False, warn: Callable[[str], None] | None = None
    ):
        self.workdir = workdir = os.fspath(fs.path(workdir))
        self.read_only = read_only
        self.warn = warn or _print_warning
        self.last_restored_step: int | None = None
        self.last_restored_path: str | None = None
        self.last_restored_identity: dict | None = None
        self.identity: dict | None = None
        self.skipped: list[tuple[str, str]] = []
        self.damaged: dict[str, str] = {}  # path -> reason, found by this instance
        self.saved: dict[str, int] = {}  # path -> step, written by this instance
        self._reported: set[str] = set()
        self._last_saved: str | None = None
        # another process may have written since this one last listed the bucket
        fs.forget_listings(workdir)
        # read-only managers warn about options they ignore; orbax logs an ERROR for a step whose
        # _CHECKPOINT_METADATA it cannot parse, which `restore` does not need
        with quiet.absl_quiet():
            self._open(workdir, read_only)
        # the local work directory as opened (made by _open if new), pinned: a directory made
        # again at its path cannot reuse its identity (store/checkpoint/_storage.py)
        self.dir_id = fs.dir_id(workdir)
        unpin = fs.pin_dir(workdir)
        self._unpin = None if unpin is None else weakref.finalize(self, unpin)

    def _open(self, workdir: str, read_only: bool) -> None:
        # Saves are synchronous: a failed write (full disk, quota) surfaces in `save` itself, as
        # one StorageError, instead of as tracebacks from orbax's writer threads while training
        # goes on. A checkpoint every few thousand steps makes the wait negligible.
        def manager(name: str, max_to_keep: int | None):
            return ocp.CheckpointManager(
                os.path.join(workdir, name),
                options=ocp.CheckpointManagerOptions(
                    max_to_keep=max_to_keep,
                    create=not read_only,
                    read_only=read_only,
                    enable_async_checkpointing=False,
                ),
                item_handlers={
                    STATE_ITEM: _orbax.state_handler(),
                    CHECKSUM_ITEM: ocp.JsonCheckpointHandler(),
                },
            )

        self.snapshots = manager(SNAPSHOT_DIR, None)
        self.preemption = manager(PREEMPTION_DIR, 1)

    # --------------------------------------------------------------------------- listing

    def _on_disk(self) -> list[tuple[int, str]]:
        """(step, path) of every step directory orbax lists, newest first (a snapshot before a
        preemption checkpoint of the same step)."""
        out = []
        for rank, manager in enumerate((self.snapshots, self.preemption)):
            out += [(s, -rank, step_path(manager, s)) for s in manager.all_steps()]
        return [(s, p) for s, _, p in sorted(out, reverse=True)]

    def complete(self, path: str) -> bool:
        """Cheap structural check: written by this instance, or a directory with a state item."""
        if path in self.saved:
            return True
        try:
            names = entries(path)
        except OSError:
            return False
        return STATE_ITEM in names or LEGACY_ITEM in names

    def latest_step(self) -> int | None:
        """The newest step of either kind whose directory holds a checkpoint (empty or stray step
        directories are passed over; the arrays are checked by `restore`)."""
        return next((s for s, p in self._on_disk() if self.complete(p)), None)

    def snapshot_steps(self) -> list[int]:
        return self._steps(self.snapshots)

    def _steps(self, manager) -> list[int]:
        return sorted(s for s in manager.all_steps() if self.complete(step_path(manager, s)))

    def last_good(self) -> str | None:
        """The newest checkpoint known to be good: the last one this instance saved or restored
        (whichever is newer), else the newest complete one on disk (not verified)."""
        return self._known_good() or next((p for _, p in self._on_disk() if self.complete(p)), None)

    def _known_good(self) -> str | None:
        known = [(step, path) for path, step in self.saved.items() if path == self._last_saved]
        if self.last_restored_path is not None and self.last_restored_step is not None:
            known.append((self.last_restored_step, self.last_restored_path))
        return max(known)[1] if known else None

    def forget_saves_except(self, finished: list[tuple[int, str]]) -> None:
        """After a failed write: only the (step, path) in `finished` count as saved."""
        self.saved = {p: s for p, s in self.saved.items() if (s, p) in finished}
        self._last_saved = max((s, p) for p, s in self.saved.items())[1] if self.saved else None

    # --------------------------------------------------------------------------- saving

    def save(self, step: int, state: Any, *, snapshot: bool) -> None:
        """Saves `state` (a pytree of arrays) with the checksums of its arrays, as a snapshot or
        the rolling preemption one.

        Raises FloatingPointError, writing nothing, when a float array holds NaN, Inf or
        |x| > ABSURD. A step already on disk is kept (not rewritten) unless this instance found it
        damaged: then it is moved aside (store/checkpoint/_quarantine.py) and written anew.
        """
        bad = _leaves.nonfinite_leaves(state)
        if bad:
            good = self._known_good()
            if good is None and (good := self.last_good()) is not None:
                good += " (the newest on disk)"
            raise FloatingPointError(
                f"refusing to save step {step}: {bad[0]}"
                + (f" (and {len(bad) - 1} more arrays)" if len(bad) > 1 else "")
                + f" holds NaN, Inf or values beyond {_leaves.ABSURD:g}: training diverged; "
                "nothing was written. The last good checkpoint is "
                + (good or "none (no checkpoint yet)")
                + "; lower config.optim.lr, set config.optim.grad_clip, or check the data"
            )
        if _storage.vanished(self):
            raise StorageError(_storage.vanished_message(self.workdir, f"step {step}"))
        manager = self.snapshots if snapshot else self.preemption
        blocking = _quarantine.blocking(self, manager, step, rolling=not snapshot)
        if blocking:
            _quarantine.move_aside(self, manager, blocking, step)
        if step in manager.all_steps():
            return
        checksums = {
            "format": CHECKSUM_FORMAT,
            "algorithm": "crc32",
            "leaves": _leaves.checksums(state),
            **({"run": self.identity} if self.identity is not None else {}),
        }
        args = ocp.args.Composite(
            **{
                STATE_ITEM: ocp.args.PyTreeSave(state),
                CHECKSUM_ITEM: ocp.args.JsonSave(checksums),
            }
        )
        with _storage.writing(self):
            manager.save(step, args=args, force=True)
        if _storage.vanished(self):  # removed while this save ran: orbax's `mkdir -p` made it again
            _storage.remove_recreated(self.workdir)
            raise StorageError(_storage.vanished_message(self.workdir, f"step {step}"))
        path = step_path(manager, step)
        self.saved[path] = step
        self._last_saved = path

    def retain(self, keep: int) -> list[str]:
        """Keep-last-N (store/checkpoint/_retention.py): the deleted snapshots' paths."""
        return _retention.retain(self, keep)

    # --------------------------------------------------------------------------- restoring

    def restore(self, like: Any, step: int | None = None) -> Any:
        """Restores checkpoint `step` (default: the newest intact one) shaped and sharded like
        `like` (a pytree of arrays or ShapeDtypeStructs).

        Returns None when there is no checkpoint. With step=None a damaged checkpoint (empty or
        stray directory, missing or truncated file, checksum mismatch) is skipped with one `warn`
        line and the next newest is tried, and so is one whose directory names another step than
        the state it holds (a renamed or copied checkpoint) or one removed while it was read (by
        a training beside this reader: said as such, not as damage); when none is intact, one
        DamagedCheckpointError (a ValueError) names each. An explicit `step` that is damaged
        raises DamagedCheckpointError. A checkpoint written with another config (other leaves or
        shapes than `like`) raises a plain ValueError without trying older ones. Nothing is
        deleted or moved.
        """
        self.wait()
        self.skipped = []
        candidates = self._on_disk()
        if step is not None:
            candidates = [(s, p) for s, p in candidates if s == step]
            if not candidates:
                raise ValueError(
                    f"no checkpoint at step {step}; available: {self.snapshot_steps()} "
                    f"(snapshots), {self._steps(self.preemption)} (preemption)"
                )
        elif not candidates:
            return None
        skipped = []
        for s, path in candidates:
            try:
                (state, verified, identity), reason = _read.read_step(path, like), None
                stored = _leaves.stored_step(state)
                if stored is not None and stored != s:
                    state = None
                    reason = (
                        f"its name says step {s} but it holds the state of step {stored} "
                        "(renamed or copied by hand?)"
                    )
            except Damaged as e:
                state, verified, identity, reason = None, False, None, str(e)
                if _read.removed_while_read(path):  # a run writing beside this one rolled it
                    reason = _read.REMOVED
            if _any_process(reason is not None):  # every process takes the same checkpoint
                reason = reason or "damaged as read by another process"
                if reason != _read.REMOVED:
                    self.damaged[path] = reason
                skipped.append((path, reason))
                continue
            for p, r in skipped:
                kept = "" if r == _read.REMOVED else " (nothing was deleted)"
                self.warn_once(p, f"skipped checkpoint {p}: {r}{kept}")
            if not verified:
                self.warn_once(
                    path,
                    f"checkpoint {path} has no checksums (written before they were added): "
                    "restored it unverified",
                )
            self.skipped = skipped
            self.last_restored_step, self.last_restored_path = s, path
            self.last_restored_identity = identity
            return state
        self.skipped = skipped
        if step is not None:
            (path, reason), others = skipped[0], skipped[1:]
            also = "".join(f"; so is its copy {p} ({r})" for p, r in others)
            raise DamagedCheckpointError(
                f"checkpoint {path} cannot be restored: it is damaged ({reason}){also}. "
                f"Nothing was deleted; restore another step (snapshots: {self.snapshot_steps()}, "
                f"preemption: {self._steps(self.preemption)}), or omit the step for the newest "
                "intact one",
                skipped,
            )
        listing = "; ".join(f"{p} ({r})" for p, r in skipped)
        raise DamagedCheckpointError(
            f"no checkpoint in {self.workdir} can be restored, every one is damaged: {listing}. "
            "Nothing was deleted; restore the files from a backup, or use a fresh --workdir",
            skipped,
        )

    def restore_newest(self, like: Any) -> tuple[Any, int | None]:
        """(state, step) of the newest intact checkpoint (see `restore`), or (None, None)."""
        state = self.restore(like)
        return state, (None if state is None else self.last_restored_step)

    def warn_once(self, path: str, line: str) -> None:
        key = f"{path}\0{line}"
        if key not in self._reported:
            self._reported.add(key)
            self.warn(line)

    # --------------------------------------------------------------------------- lifetime

    def refresh(self, tries: int = 5) -> None:
        """Re-reads the step directories (checkpoints another process wrote since opening). On
        an object store the cached listings are dropped first, and a listing that races the
        writer's deletion of its previous preemption checkpoint is read again."""
        for attempt in range(tries):
            fs.forget_listings(self.workdir)
            try:
                self.snapshots.reload()
                self.preemption.reload()
                return
            except FileNotFoundError:
                if attempt == tries - 1:
                    raise
                time.sleep(0.2)

    def wait(self) -> None:
        """Blocks until pending saves are written; StorageError if one could not be."""
        with _storage.writing(self):
            self.snapshots.wait_until_finished()
            self.preemption.wait_until_finished()

    def close(self) -> None:
        try:
            self.snapshots.close()
        finally:
            self.preemption.close()
            if self._unpin is not None:
                self._unpin()

    def __enter__(self) -> Checkpoints:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.wait()
        finally:
            self.close()


def require_checkpoint(ckpts: Checkpoints, fix: str = "", what: str = "checkpoint") -> None:
    """Raises one ValueError when `ckpts` has no checkpoint at all; `fix` says what to do
    (default: train first)."""
    if ckpts.latest_step() is None:
        fix = fix or f"train first with --mode=train --workdir={ckpts.workdir}"
        raise ValueError(f"no {what} in {ckpts.workdir}; {fix}")


def restore_ema(ckpts: Checkpoints, like: Any, step: int | None = None) -> tuple[Any, int]:
    """(EMA params, step) of checkpoint `step` (default: the newest intact one); `like` is the
    train state's structure (abstract or concrete)."""
    require_checkpoint(ckpts)
    state = ckpts.restore(like, step)
    return state.ema_params, int(cast(np.ndarray, _leaves.host(state.step)))
