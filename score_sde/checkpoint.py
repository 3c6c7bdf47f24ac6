"""Checkpoints: the one place that talks to orbax.

Layout under the work directory:
    checkpoints/<step>/        snapshots every config.training.snapshot_freq steps, all kept
    checkpoints-meta/<step>/   one rolling preemption checkpoint (every snapshot_freq_for_preemption
                               steps and on SIGTERM), only the newest kept
Resuming restores the newest of the two. Writes are atomic (orbax renames a finished temporary
directory), so a process killed mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import contextlib
import os

import jax
import orbax.checkpoint as ocp
from absl import logging

SNAPSHOT_DIR = "checkpoints"
PREEMPTION_DIR = "checkpoints-meta"


def _abstract(tree):
    """ShapeDtypeStructs (with shardings) to restore into: the arrays land where `tree` lives."""
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
        tree,
    )


@contextlib.contextmanager
def _quiet():
    """absl (orbax) log messages below ERROR are dropped inside the block."""
    level = logging.get_verbosity()
    logging.set_verbosity(logging.ERROR)
    try:
        yield
    finally:
        logging.set_verbosity(level)


class Checkpoints:
    """Snapshot and preemption CheckpointManagers over one work directory; a context manager
    (`with Checkpoints(workdir) as ckpts:`) that finishes pending saves and closes on exit."""

    def __init__(self, workdir: str, *, read_only: bool = False):
        workdir = os.path.abspath(workdir)
        with _quiet():  # read-only managers warn about options they ignore
            self._open(workdir, read_only)

    def _open(self, workdir: str, read_only: bool) -> None:
        self.snapshots = ocp.CheckpointManager(
            os.path.join(workdir, SNAPSHOT_DIR),
            options=ocp.CheckpointManagerOptions(
                max_to_keep=None, create=not read_only, read_only=read_only
            ),
        )
        self.preemption = ocp.CheckpointManager(
            os.path.join(workdir, PREEMPTION_DIR),
            options=ocp.CheckpointManagerOptions(
                max_to_keep=1, create=not read_only, read_only=read_only
            ),
        )

    def save(self, step: int, state, *, snapshot: bool) -> None:
        """Saves `state` (a pytree of arrays) as a snapshot or the rolling preemption one."""
        manager = self.snapshots if snapshot else self.preemption
        if step in manager.all_steps():
            return
        manager.save(step, args=ocp.args.StandardSave(state), force=True)

    def latest_step(self) -> int | None:
        steps = [s for m in (self.snapshots, self.preemption) if (s := m.latest_step()) is not None]
        return max(steps) if steps else None

    def snapshot_steps(self) -> list[int]:
        return sorted(self.snapshots.all_steps())

    def restore(self, like, step: int | None = None):
        """Restores checkpoint `step` (default: the newest) shaped and sharded like `like`.

        Returns None when there is no checkpoint.
        """
        self.wait()
        if step is None:
            step = self.latest_step()
            if step is None:
                return None
        for manager in (self.snapshots, self.preemption):
            if step in manager.all_steps():
                try:
                    return manager.restore(step, args=ocp.args.StandardRestore(_abstract(like)))
                except Exception as e:  # noqa: BLE001 - orbax raises many types; one message
                    path = os.path.join(str(manager.directory), str(step))
                    cause = " ".join(str(e).split())[:300]
                    raise ValueError(
                        f"checkpoint {path} cannot be restored into this config's train state "
                        f"({type(e).__name__}: {cause}); it is damaged or was written with "
                        "another config: rerun with the config it was trained with (saved as "
                        "config.json in the work directory), or use a fresh --workdir"
                    ) from None
        raise ValueError(
            f"no checkpoint at step {step}; available: {sorted(self.snapshots.all_steps())} "
            f"(snapshots), {sorted(self.preemption.all_steps())} (preemption)"
        )

    def wait(self) -> None:
        self.snapshots.wait_until_finished()
        self.preemption.wait_until_finished()

    def close(self) -> None:
        self.snapshots.close()
        self.preemption.close()

    def __enter__(self) -> Checkpoints:
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.wait()
        finally:
            self.close()
