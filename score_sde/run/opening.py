"""Opening a run: the prologue every mode shares, as one context manager.

    with open_run(workdir, lock="run.lock") as run:        # train, train_classifier
        state = run.ckpts.restore(like)
    with open_run(workdir, lock="eval.lock", read_only=True, check=fn) as run:   # eval
    with open_run(workdir, lock=None, read_only=True) as run:                    # sample

Order: the work directory is prepared (created if missing, unless it is only read: then a missing
one is an error; a remote URL is checked; a writing mode refuses checkpoint folders linked into
another work directory: store.workdir.refuse_shared_folders), then read-only checkpoints are
opened and `check(ckpts)` runs before anything is written, then the lock is taken (process 0),
read-write checkpoints are opened under it, and the metrics log (process 0) last. Everything
opened is closed on exit, on error too.

A run that fails before it wrote any checkpoint takes back what it added to the work directory
(under its lock; a directory it created is removed only if it is left empty), so a mistyped flag
or a run that diverges at step 2 leaves no empty run behind. Read-only modes add nothing to take
back but their own outputs, which are kept.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterator
from typing import TextIO

from score_sde import parallel
from score_sde.store import fs
from score_sde.store import workdir as wd
from score_sde.store.checkpoint import (
    DAMAGED_DIR,
    PREEMPTION_DIR,
    SNAPSHOT_DIR,
    Checkpoints,
)
from score_sde.store.metrics_log import MetricsLogger


@dataclasses.dataclass(frozen=True)
class Run:
    """An opened run: its directory, whether this process writes files, the log, the checkpoints."""

    workdir: str
    main: bool
    log: MetricsLogger
    ckpts: Checkpoints


@contextlib.contextmanager
def open_run(
    workdir: str,
    *,
    lock: str | None = "run.lock",
    read_only: bool = False,
    subdir: str | None = None,
    check: Callable[[Checkpoints], None] | None = None,
    total_steps: int | None = None,
    stream: TextIO | None = None,
) -> Iterator[Run]:
    """Opens `workdir` (or `<workdir>/<subdir>`) for one mode; yields the `Run`.

    lock: the lock file's name (None: no lock, as for sampling); read_only: checkpoints are only
    read; check: raises ValueError before anything is written; total_steps, stream: the log's.
    """
    wd.refuse_a_file(workdir)
    if read_only and not fs.path(workdir).is_dir():  # nothing to read: create nothing either
        where = "" if fs.is_remote(workdir) or os.path.isabs(workdir) else f" ({fs.path(workdir)})"
        raise ValueError(
            f"--workdir {workdir}{where} does not exist, so it has no checkpoint; train first "
            f"with --mode=train --workdir={workdir}"
            + (", or run from the directory it is relative to" if where else "")
        )
    main = parallel.is_main_process()
    target = os.path.join(workdir, subdir) if subdir else workdir
    added = wd.Additions(target) if main and not read_only and lock is not None else None
    try:
        with _opened(
            workdir, subdir, lock, read_only, check, total_steps, stream, main, added
        ) as run:
            yield run
    except BaseException:
        if added is not None and not has_checkpoint(target):
            added.remove_directories()
        raise


@contextlib.contextmanager
def _opened(workdir, subdir, lock, read_only, check, total_steps, stream, main, added):
    workdir = wd.prepare(workdir)
    if subdir:
        workdir = os.path.join(workdir, subdir)
        fs.path(workdir).mkdir(parents=True, exist_ok=True)
    if not read_only:  # a checkpoints/ linked into another work directory is not this run's
        wd.refuse_shared_folders(workdir, (SNAPSHOT_DIR, PREEMPTION_DIR, DAMAGED_DIR))
    with contextlib.ExitStack() as stack:
        if read_only:
            ckpts = stack.enter_context(Checkpoints(workdir, read_only=True))
            if check is not None:
                check(ckpts)
        if lock is not None:
            stack.enter_context(wd.RunLock(workdir, lock, enabled=main))
            if added is not None:  # runs after the log and checkpoints close, under the lock

                def take_back(exc_type, exc, tb):
                    if exc_type is not None and not has_checkpoint(workdir):
                        added.remove_entries(keep={lock})

                stack.push(take_back)
        if not read_only:
            ckpts = stack.enter_context(Checkpoints(workdir))
            if check is not None:
                check(ckpts)
        log = stack.enter_context(
            MetricsLogger(workdir, enabled=main, total_steps=total_steps, stream=stream)
        )
        yield Run(workdir, main, log, ckpts)


def has_checkpoint(workdir: str) -> bool:
    """Whether `workdir` holds any checkpoint directory (snapshot, preemption or damaged)."""
    from score_sde.store import checkpoint

    for name in (checkpoint.SNAPSHOT_DIR, checkpoint.PREEMPTION_DIR, checkpoint.DAMAGED_DIR):
        d = fs.path(workdir) / name
        if d.is_dir() and any(d.iterdir()):
            return True
    return False
