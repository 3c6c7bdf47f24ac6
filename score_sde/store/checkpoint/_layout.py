"""Names of the work directory's checkpoint folders and of a checkpoint's items."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from score_sde.store import fs

if TYPE_CHECKING:
    import orbax.checkpoint as ocp

SNAPSHOT_DIR = "checkpoints"
PREEMPTION_DIR = "checkpoints-meta"
DAMAGED_DIR = "checkpoints-damaged"  # where `save` moves a damaged step it has to rewrite
STATE_ITEM, CHECKSUM_ITEM, LEGACY_ITEM = "state", "checksums", "default"
CHECKSUM_FORMAT = "score_sde.checksums/1"


def entries(path: str) -> set[str]:
    """The entries of directory `path` (local or remote); OSError if it cannot be listed."""
    return {p.name for p in fs.path(path).iterdir()}


def step_path(manager: ocp.CheckpointManager, step: int) -> str:
    """The step directory of `step` under an orbax CheckpointManager's directory."""
    return os.path.join(str(manager.directory), str(step))
