"""Keep-last-N over the snapshots this run can vouch for.

Orbax's own preservation policies (LatestN, ...) count every step directory on disk; ours counts
only honest ones, written by this instance (a save that returned) or restored and verified by it,
so a damaged, misnamed or copied-in snapshot can neither push an honest one out nor be deleted
(the operator's evidence stays)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from score_sde.store.checkpoint._layout import step_path

if TYPE_CHECKING:
    from score_sde.store.checkpoint._manager import Checkpoints


def retain(ckpts: Checkpoints, keep: int) -> list[str]:
    """With keep > 0 deletes the snapshots older than the newest `keep` honest ones and returns
    their paths; nothing until `keep` honest ones exist, so the newest is never deleted."""
    if keep <= 0:
        return []
    manager = ckpts.snapshots
    root = str(manager.directory)
    honest = {s for p, s in ckpts.saved.items() if os.path.dirname(p) == root}
    restored, restored_step = ckpts.last_restored_path, ckpts.last_restored_step  # set together
    if restored and restored_step is not None and os.path.dirname(restored) == root:
        honest.add(restored_step)
    if len(honest) <= keep:
        return []
    cutoff = sorted(honest)[-keep]
    removed = []
    for s in manager.all_steps():
        path = step_path(manager, s)
        if s < cutoff and path not in ckpts.damaged:
            manager.delete(s)
            ckpts.saved.pop(path, None)
            if path == ckpts.last_restored_path:
                ckpts.last_restored_step = ckpts.last_restored_path = None
            removed.append(path)
    return sorted(removed)
