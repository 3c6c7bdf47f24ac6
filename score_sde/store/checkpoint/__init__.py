"""Checkpoints: the one place that talks to orbax; one public face, a module per guarantee.

Layout under the work directory:
    checkpoints/<step>/        snapshots every config.training.snapshot_freq steps (keep-last-N:
                               config.training.keep_checkpoints)
    checkpoints-meta/<step>/   one rolling preemption checkpoint (every snapshot_freq_for_preemption
                               steps and on SIGTERM), only the newest kept
    <kind>/<step>/state/       the train state (orbax's PyTree layout)
    <kind>/<step>/checksums/   {leaf name: shape, dtype, crc32 of its bytes} and the writing run's
                               identity (orbax JsonSave), part of the same atomic checkpoint;
                               a checkpoint without checksums holds one `default/` item and
                               restores unverified
    checkpoints-damaged/       damaged steps that a resumed run had to write again, moved aside

The modules, one guarantee each:
    _manager      Checkpoints: listing, the normal save and restore path
    _read         reading one step back verified (metadata, checksums, arrays); another config
    _leaves       leaf names, host copies, crc32 checksums, NaN/Inf/absurd values
    _quarantine   moving aside a damaged step that blocks a save
    _retention    keep-last-N over the snapshots this run can vouch for
    _storage      a refused write (full disk, quota, vanished directory) as one StorageError
    _orbax        the state's type handlers, orbax's noise kept quiet, one-line reasons
    _errors, _layout

Writes are atomic: orbax finishes a step in a temporary directory and renames it (on an object
store it writes a commit marker instead), so a process killed mid-save leaves the previous
checkpoint intact; `save` refuses a state with NaN, Inf or absurd values (FloatingPointError
naming the last good checkpoint; nothing is written). `restore(like)` takes the newest intact
checkpoint of either kind, skipping each damaged or misnamed one with one line; `restore(like,
step)` never falls back; a checkpoint of another config is a ValueError. Every path operation
goes through score_sde.store.fs, so a bucket (gs://) and a disk take the same code.
"""

from score_sde.store.checkpoint._errors import DamagedCheckpointError, StorageError
from score_sde.store.checkpoint._layout import (
    CHECKSUM_FORMAT,
    CHECKSUM_ITEM,
    DAMAGED_DIR,
    LEGACY_ITEM,
    PREEMPTION_DIR,
    SNAPSHOT_DIR,
    STATE_ITEM,
)
from score_sde.store.checkpoint._leaves import ABSURD, checksums, nonfinite_leaves
from score_sde.store.checkpoint._manager import Checkpoints, require_checkpoint, restore_ema
from score_sde.store.checkpoint._orbax import SMALL_ARRAYS_WHOLE

__all__ = [
    "ABSURD",
    "CHECKSUM_FORMAT",
    "CHECKSUM_ITEM",
    "DAMAGED_DIR",
    "LEGACY_ITEM",
    "PREEMPTION_DIR",
    "SMALL_ARRAYS_WHOLE",
    "SNAPSHOT_DIR",
    "STATE_ITEM",
    "Checkpoints",
    "DamagedCheckpointError",
    "StorageError",
    "checksums",
    "nonfinite_leaves",
    "require_checkpoint",
    "restore_ema",
]
