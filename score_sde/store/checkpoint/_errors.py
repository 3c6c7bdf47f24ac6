"""What a checkpoint operation raises: one line each, ValueErrors the launcher prints."""

from __future__ import annotations


class Damaged(Exception):
    """One checkpoint cannot be read back intact; the message is the reason."""


class StorageError(ValueError):
    """A checkpoint could not be written: the disk is full, a quota is reached, the work
    directory is read-only or gone. One line naming the path, the space free and needed, and the
    newest intact checkpoint (a ValueError: the launcher prints it and exits 2)."""


class DamagedCheckpointError(ValueError):
    """No intact checkpoint to restore (the one asked for, or any); `damaged` lists
    (path, reason) of those tried. A ValueError, so the launcher prints it as one line."""

    def __init__(self, message: str, damaged: list[tuple[str, str]]):
        super().__init__(message)
        self.damaged = damaged
