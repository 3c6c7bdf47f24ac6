"""Moving aside the damaged step directories that block a save, instead of deleting them.

A damaged step (found by `restore`) or an incomplete one at the step being saved, or for the
rolling preemption slot at a newer step (orbax would keep it and drop the new save), goes to
`<workdir>/checkpoints-damaged/<kind>/<step>` (`~2`, `~3`, ... when taken); an empty one is
removed. Local: one rename. Object store: copied object by object, then deleted (store.fs.move):
not atomic, but a kill midway leaves each half where the next run reads it as what it is.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import jax

from score_sde.store import fs
from score_sde.store.checkpoint._layout import DAMAGED_DIR, entries, step_path

if TYPE_CHECKING:
    import orbax.checkpoint as ocp

    from score_sde.store.checkpoint._manager import Checkpoints


def blocking(
    ckpts: Checkpoints, manager: ocp.CheckpointManager, step: int, *, rolling: bool
) -> list[int]:
    """Steps of `manager` that would keep `step` from being saved."""
    return [
        s
        for s in manager.all_steps()
        if (s == step or (rolling and s > step))
        and ((p := step_path(manager, s)) in ckpts.damaged or not ckpts.complete(p))
    ]


def move_aside(
    ckpts: Checkpoints, manager: ocp.CheckpointManager, steps: list[int], saving: int
) -> None:
    """Moves (or, when empty, removes) the step directories `steps` of `manager`, one line each
    through ckpts.warn; done by process 0, every process then agrees."""
    for s in steps:
        path = step_path(manager, s)
        if jax.process_index() == 0 and fs.path(path).is_dir():
            if not entries(path):
                fs.path(path).rmdir()
                ckpts.warn_once(
                    path, f"removed the empty step directory {path} to save step {saving}"
                )
            else:
                base = os.path.join(
                    ckpts.workdir, DAMAGED_DIR, os.path.basename(str(manager.directory)), str(s)
                )
                dest, n = base, 1
                while fs.path(dest).exists():
                    n += 1
                    dest = f"{base}~{n}"
                fs.move(path, dest)
                reason = ckpts.damaged.get(path, "not a complete checkpoint")
                ckpts.warn_once(path, f"moved the damaged checkpoint {path} ({reason}) to {dest}")
        ckpts.damaged.pop(path, None)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"score_sde checkpoint clear {saving}")
    fs.forget_listings(ckpts.workdir)
    manager.reload()
