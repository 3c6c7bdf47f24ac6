"""Checkpoints: the one place that talks to orbax.

Layout under the work directory:
    checkpoints/<step>/        snapshots every config.training.snapshot_freq steps, all kept
    checkpoints-meta/<step>/   one rolling preemption checkpoint (every snapshot_freq_for_preemption
                               steps and on SIGTERM), only the newest kept
    <kind>/<step>/state/       the train state (orbax StandardSave)
    <kind>/<step>/checksums/   {leaf name: shape, dtype, crc32 of its bytes} (orbax JsonSave), part
                               of the same atomic checkpoint; checkpoints written before checksums
                               were added hold one `default/` item and restore unverified
    checkpoints-damaged/       damaged steps that a resumed run had to write again, moved aside

Writes are atomic (orbax renames a finished temporary directory), so a process killed mid-save
leaves the previous checkpoint intact. `save` refuses a state with NaN, Inf or absurd values
(FloatingPointError naming the last good checkpoint; nothing is written).

`restore(like)` takes the newest intact checkpoint of either kind: a step directory that is empty
or stray, has a missing or truncated file, or whose arrays do not match their checksums is
skipped with one line naming it and the reason, and the next newest is tried; so is one whose
directory names another step than the state inside holds (renamed or copied by hand). Damage is
told apart from another config by reading the metadata first: leaves or shapes other than those of
`like` (in orbax's metadata and the checksum list alike) raise ValueError, without falling back.
`restore(like, step)` never falls back. Restoring deletes and moves nothing; orbax's own log lines
and its reader threads' tracebacks are kept off the terminal (absl `--verbosity=1` shows them).
"""

from __future__ import annotations

import contextlib
import gc
import io
import logging as py_logging
import os
import re
import shutil
import sys
import threading
import time
import warnings
import weakref
import zlib
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from score_sde.store import fs, quiet

SNAPSHOT_DIR = "checkpoints"
PREEMPTION_DIR = "checkpoints-meta"
DAMAGED_DIR = "checkpoints-damaged"  # where `save` moves a damaged step it has to rewrite
STATE_ITEM, CHECKSUM_ITEM, LEGACY_ITEM = "state", "checksums", "default"
CHECKSUM_FORMAT = "score_sde.checksums/1"
# |x| above this in a float array of the state is divergence, not a trained network (squared,
# it overflows float32).
ABSURD = 1e30

# Orbax's default on CPU and TPU writes a replicated array from all replicas, each a slice cut on
# device by an eagerly compiled op per shape: the first save of the 189k-parameter digits state on
# 4 CPU devices made 2,456 slices and spent 4.8 of its 7.8 s there. Arrays under 16 MiB per
# replica are written whole from one replica (the same files); larger ones stay replica-parallel.
REPLICA_PARALLEL_MIN_BYTES = 16 << 20


def _write_small_arrays_whole() -> bool:
    """Registers that handler for jax.Array; False (orbax's default kept, slower first saves) if
    this orbax lacks what it needs (the metadata store is not exported: orbax 0.12's layout)."""
    try:
        from orbax.checkpoint._src.metadata import array_metadata_store

        handler = ocp.type_handlers.ArrayHandler(
            array_metadata_store=array_metadata_store.Store(),  # as orbax's default: PRNG keys
            min_slice_bytes_for_replica_parallel=REPLICA_PARALLEL_MIN_BYTES,
        )
    except (ImportError, TypeError):
        return False
    with quiet.absl_quiet():  # orbax logs a warning on any override
        ocp.type_handlers.register_type_handler(jax.Array, handler, override=True)
    return True


SMALL_ARRAYS_WHOLE = _write_small_arrays_whole()


class _Damaged(Exception):
    """One checkpoint cannot be read back intact; the message is the reason."""


class StorageError(ValueError):
    """A checkpoint could not be written: the disk is full, a quota is reached, the work
    directory is read-only or gone. One line naming the path, the space free and needed, and the
    newest intact checkpoint (a ValueError: the launcher prints it and exits 2)."""


def _dir_id(path: str) -> tuple[int, int] | None:
    """(st_dev, st_ino) of a local directory; None if it does not exist or is remote."""
    if fs.is_remote(path):
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class DamagedCheckpointError(ValueError):
    """No intact checkpoint to restore (the one asked for, or any); `damaged` lists
    (path, reason) of those tried. A ValueError, so the launcher prints it as one line."""

    def __init__(self, message: str, damaged: list[tuple[str, str]]):
        super().__init__(message)
        self.damaged = damaged


# ------------------------------------------------------------------------------- leaves


def _name(path) -> str:
    """Dotted name of a leaf, as orbax names it: `params.hidden.0.kernel.value`."""
    parts = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return ".".join(parts)


def _named_leaves(tree) -> dict:
    return {_name(p): x for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _host(x) -> np.ndarray | None:
    """The host copy of a leaf (one replica of a replicated array), None when this process does
    not hold all of it."""
    if isinstance(x, jax.Array):
        if x.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        if x.is_fully_addressable:
            return np.asarray(x)
        return None
    return np.asarray(x)


def _crc32(a: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(a).reshape(-1).view(np.uint8))


def _names(path: str) -> set[str]:
    """The entries of directory `path` (local or remote); OSError if it cannot be listed."""
    return {p.name for p in fs.path(path).iterdir()}


def _stored_step(state) -> int | None:
    """The step a restored state records (a TrainState's `step`), or None if it has none."""
    step = getattr(state, "step", None)
    if step is None or np.ndim(step) != 0:
        return None
    shards = getattr(step, "addressable_data", None)  # replicated over processes: a local copy
    return int(np.asarray(shards(0) if shards is not None else step))


def checksums(tree) -> dict:
    """{leaf name: {"shape", "dtype", "crc32"}} of the arrays of `tree`; crc32 is None for an array
    spread over several processes (not verified)."""
    out = {}
    for name, x in _named_leaves(tree).items():
        a = _host(x)
        out[name] = {
            "shape": [int(d) for d in np.shape(x)],
            "dtype": jnp.dtype(x.dtype if a is None else a.dtype).name,
            "crc32": None if a is None else _crc32(a),
        }
    return out


@jax.jit
def _bad_leaves(leaves):
    """[n] bool: leaf i holds NaN, Inf or |x| > ABSURD. One device call for the whole state."""
    return jnp.stack([~jnp.all(jnp.abs(x) <= ABSURD) for x in leaves])


def nonfinite_leaves(tree) -> list[str]:
    """Names of the float arrays of `tree` holding NaN, Inf or |x| > ABSURD."""
    named = {
        n: x
        for n, x in _named_leaves(tree).items()
        if jnp.issubdtype(getattr(x, "dtype", np.float32), jnp.inexact)
    }
    if not named:
        return []
    bad = _host(_bad_leaves(list(named.values())))
    return [n for n, b in zip(named, bad, strict=True) if b]


def _abstract(tree, dtypes: dict | None = None):
    """ShapeDtypeStructs (with shardings) to restore into: the arrays land where `tree` lives;
    `dtypes` ({name: dtype}) overrides the dtype leaf by leaf (the dtype they were saved in)."""

    def one(path, x):
        dtype = (dtypes or {}).get(_name(path), x.dtype)
        return jax.ShapeDtypeStruct(x.shape, dtype, sharding=getattr(x, "sharding", None))

    return jax.tree_util.tree_map_with_path(one, tree)


# ------------------------------------------------------------------------------- quiet orbax


@contextlib.contextmanager
def _silenced(settle: float = 0.5, patience: float = 3.0):
    """Keeps orbax's noise about a damaged checkpoint off the terminal: its absl log lines, the
    asyncio "Future exception was never retrieved" records, "coroutine ... was never awaited"
    warnings, and the tracebacks its abandoned reads print from TensorStore threads ("Event loop
    is closed") when they finish after the failed restore closed its event loop.

    Python-level stderr is captured for the block and, after a failure, until nothing more has
    been written for `settle` seconds (at most `patience`); the text goes to absl's debug log.
    Used around reads (at start-up) and synchronous saves, when no other thread prints."""
    with quiet.SWAP_LOCK:
        with _silenced_unlocked(settle, patience):
            yield


@contextlib.contextmanager
def _silenced_unlocked(settle: float, patience: float):
    level = logging.get_verbosity()
    asyncio_logger = py_logging.getLogger("asyncio")
    saved = asyncio_logger.disabled, sys.unraisablehook, threading.excepthook, sys.stderr
    captured, failed = io.StringIO(), False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.set_verbosity(logging.FATAL)
        asyncio_logger.disabled = True
        sys.unraisablehook = threading.excepthook = lambda _: None
        sys.stderr = captured
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            try:
                # A failure abandons orbax's coroutines: collected here, they report now and not
                # at exit. Only then: a full collection costs O(heap), seconds in a big process.
                if failed:
                    gc.collect()
                size, quiet_since = captured.tell(), time.monotonic()
                deadline = quiet_since + patience
                while (failed or size) and time.monotonic() < deadline:
                    if time.monotonic() - quiet_since >= settle:
                        break
                    time.sleep(0.05)
                    if failed:
                        gc.collect()
                    if captured.tell() != size:
                        size, quiet_since = captured.tell(), time.monotonic()
            finally:
                asyncio_logger.disabled, sys.unraisablehook, threading.excepthook = saved[:3]
                sys.stderr = saved[3]
                logging.set_verbosity(level)
                if captured.tell():
                    logging.debug(
                        "orbax output while reading a checkpoint:\n%s", captured.getvalue()
                    )


def _reason(e: BaseException) -> str:
    """One short line for an orbax / TensorStore error: its deepest cause, without the spec."""
    while e.__cause__ is not None:
        e = e.__cause__
    text = " ".join(str(e).split()).split(" See full TensorStore details")[0]
    text = re.sub(r' in OCDBT database at (local file "[^"]*"|\S+:)', "", text)
    if len(text) > 200:
        text = text[:200].rsplit(" ", 1)[0] + " ..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _attempt(what: str, fn: Callable):
    """(fn(), None), or (None, "what (reason)") when it raises. Nothing of the exception is kept:
    its traceback holds orbax's abandoned coroutines, which must be collected inside _silenced."""
    try:
        return fn(), None
    except Exception as e:  # orbax and TensorStore raise many types; one reason
        return None, f"{what} ({_reason(e)})"


def _print_warning(line: str) -> None:
    if jax.process_index() == 0:
        print("warning: " + line, file=sys.stderr, flush=True)


def _any_process(flag: bool) -> bool:
    """True on every process when `flag` is True on any (checkpoint decisions must agree)."""
    if jax.process_count() == 1:
        return flag
    from jax.experimental import multihost_utils

    return bool(np.asarray(multihost_utils.process_allgather(np.int32(flag))).max())


# ------------------------------------------------------------------------------- Checkpoints


class Checkpoints:
    """Snapshot and preemption CheckpointManagers over one work directory; a context manager
    (`with Checkpoints(workdir) as ckpts:`) that finishes pending saves and closes on exit.

    `warn(line)` receives the one line per checkpoint problem (a skipped damaged checkpoint, an
    unverified old one, a damaged one moved aside to be rewritten); default: stderr of process 0.
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
        self._damaged: dict[str, str] = {}  # path -> reason, found by this instance
        self._reported: set[str] = set()
        self._saved: dict[str, int] = {}  # path -> step, written by this instance
        self._last_saved: str | None = None
        # read-only managers warn about options they ignore; orbax logs an ERROR for a step whose
        # _CHECKPOINT_METADATA it cannot parse, which `restore` does not need
        with quiet.absl_quiet():
            self._open(workdir, read_only)
        # (device, inode) of the work directory as opened (made by _open if new), pinned by an
        # open descriptor: a directory made again at its path cannot reuse the inode
        self._dir_id = _dir_id(workdir)
        self._unpin = None
        if self._dir_id is not None:
            fd = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY)
            self._unpin = weakref.finalize(self, os.close, fd)

    def _open(self, workdir: str, read_only: bool) -> None:
        # Saves are synchronous: a failed write (full disk, quota) surfaces in `save` itself, as
        # one StorageError, instead of as tracebacks from orbax's writer threads while training
        # goes on. A checkpoint every few thousand steps makes the wait negligible.
        def options(max_to_keep):
            return ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep,
                create=not read_only,
                read_only=read_only,
                enable_async_checkpointing=False,
            )

        self.snapshots = ocp.CheckpointManager(
            os.path.join(workdir, SNAPSHOT_DIR), options=options(None)
        )
        self.preemption = ocp.CheckpointManager(
            os.path.join(workdir, PREEMPTION_DIR), options=options(1)
        )

    # --------------------------------------------------------------------------- listing

    @staticmethod
    def _path(manager, step: int) -> str:
        return os.path.join(str(manager.directory), str(step))

    def _on_disk(self) -> list[tuple[int, str]]:
        """(step, path) of every step directory orbax lists, newest first (a snapshot before a
        preemption checkpoint of the same step)."""
        out = []
        for rank, manager in enumerate((self.snapshots, self.preemption)):
            out += [(s, -rank, self._path(manager, s)) for s in manager.all_steps()]
        return [(s, p) for s, _, p in sorted(out, reverse=True)]

    def _complete(self, path: str) -> bool:
        """Cheap structural check: written by this instance, or a directory with a state item."""
        if path in self._saved:
            return True
        try:
            names = _names(path)
        except OSError:
            return False
        return STATE_ITEM in names or LEGACY_ITEM in names

    def latest_step(self) -> int | None:
        """The newest step of either kind whose directory holds a checkpoint (empty or stray step
        directories are passed over; the arrays are checked by `restore`)."""
        return next((s for s, p in self._on_disk() if self._complete(p)), None)

    def snapshot_steps(self) -> list[int]:
        return sorted(
            s for s in self.snapshots.all_steps() if self._complete(self._path(self.snapshots, s))
        )

    def last_good(self) -> str | None:
        """The newest checkpoint known to be good: the last one this instance saved or restored
        (whichever is newer), else the newest complete one on disk (not verified)."""
        return self._known_good() or next(
            (p for _, p in self._on_disk() if self._complete(p)), None
        )

    def _known_good(self) -> str | None:
        known = [(step, path) for path, step in self._saved.items() if path == self._last_saved]
        if self.last_restored_path is not None:
            known.append((self.last_restored_step, self.last_restored_path))
        return max(known)[1] if known else None

    # --------------------------------------------------------------------------- saving

    def save(self, step: int, state, *, snapshot: bool) -> None:
        """Saves `state` (a pytree of arrays) with the checksums of its arrays, as a snapshot or
        the rolling preemption one.

        Raises FloatingPointError, writing nothing, when a float array holds NaN, Inf or
        |x| > ABSURD. A step already on disk is kept (not rewritten) unless this instance found it
        damaged: then it is moved to <workdir>/checkpoints-damaged/ (an empty directory is
        removed) and the step is written anew.
        """
        bad = nonfinite_leaves(state)
        if bad:
            good = self._known_good()
            if good is None and (good := self.last_good()) is not None:
                good += " (the newest on disk)"
            raise FloatingPointError(
                f"refusing to save step {step}: {bad[0]}"
                + (f" (and {len(bad) - 1} more arrays)" if len(bad) > 1 else "")
                + f" holds NaN, Inf or values beyond {ABSURD:g}: training diverged; nothing was "
                "written. The last good checkpoint is "
                + (good or "none (no checkpoint yet)")
                + "; lower config.optim.lr, set config.optim.grad_clip, or check the data"
            )
        if self._vanished():
            raise StorageError(self._vanished_message(f"step {step}"))
        manager = self.snapshots if snapshot else self.preemption
        self._clear_damaged(manager, step, rolling=not snapshot)
        if step in manager.all_steps():
            return
        args = ocp.args.Composite(
            **{
                STATE_ITEM: ocp.args.StandardSave(state),
                CHECKSUM_ITEM: ocp.args.JsonSave(
                    {
                        "format": CHECKSUM_FORMAT,
                        "algorithm": "crc32",
                        "leaves": checksums(state),
                        **({"run": self.identity} if self.identity is not None else {}),
                    }
                ),
            }
        )
        path = self._path(manager, step)
        with self._writing():
            manager.save(step, args=args, force=True)
        if self._vanished():  # removed while this save ran: orbax's `mkdir -p` made it again
            self._remove_recreated()
            raise StorageError(self._vanished_message(f"step {step}"))
        self._saved[path] = step
        self._last_saved = path

    def retain(self, keep: int) -> list[str]:
        """Keep-last-N: with keep > 0 deletes the snapshots older than the newest `keep` honest
        ones and returns their paths. Honest means written by this instance (a save that returned)
        or restored and verified by it; nothing is deleted until `keep` of them exist, so the
        newest honest checkpoint is never deleted, and damaged, misnamed or foreign ones (found
        by `restore`) are left alone. keep = 0 deletes nothing."""
        if keep <= 0:
            return []
        root = str(self.snapshots.directory)
        honest = {s for p, s in self._saved.items() if os.path.dirname(p) == root}
        if self.last_restored_path and os.path.dirname(self.last_restored_path) == root:
            honest.add(self.last_restored_step)
        if len(honest) <= keep:
            return []
        cutoff = sorted(honest)[-keep]
        removed = []
        for s in self.snapshots.all_steps():
            path = self._path(self.snapshots, s)
            if s < cutoff and path not in self._damaged:
                self.snapshots.delete(s)
                self._saved.pop(path, None)
                if path == self.last_restored_path:
                    self.last_restored_step = self.last_restored_path = None
                removed.append(path)
        return sorted(removed)

    def _clear_damaged(self, manager, step: int, *, rolling: bool) -> None:
        """Moves aside the damaged step directories that would block saving `step`: the same step,
        and for the rolling slot any newer one (orbax would keep it and drop the new save)."""
        blocking = [
            s
            for s in manager.all_steps()
            if (s == step or (rolling and s > step))
            and ((p := self._path(manager, s)) in self._damaged or not self._complete(p))
        ]
        if not blocking:
            return
        for s in blocking:
            path = self._path(manager, s)
            if jax.process_index() == 0:
                if fs.path(path).is_dir() and not _names(path):
                    fs.path(path).rmdir()
                    self._warn(path, f"removed the empty step directory {path} to save step {step}")
                elif fs.path(path).is_dir():
                    base = os.path.join(
                        self.workdir, DAMAGED_DIR, os.path.basename(str(manager.directory)), str(s)
                    )
                    dest, n = base, 1
                    while fs.path(dest).exists():
                        n += 1
                        dest = f"{base}~{n}"
                    fs.move(path, dest)
                    reason = self._damaged.get(path, "not a complete checkpoint")
                    self._warn(path, f"moved the damaged checkpoint {path} ({reason}) to {dest}")
            self._damaged.pop(path, None)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(f"score_sde checkpoint clear {step}")
        manager.reload()

    # --------------------------------------------------------------------------- restoring

    def restore(self, like, step: int | None = None):
        """Restores checkpoint `step` (default: the newest intact one) shaped and sharded like
        `like` (a pytree of arrays or ShapeDtypeStructs).

        Returns None when there is no checkpoint. With step=None a damaged checkpoint (empty or
        stray directory, missing or truncated file, checksum mismatch) is skipped with one `warn`
        line and the next newest is tried, and so is one whose directory names another step than
        the state it holds (a renamed or copied checkpoint); when none is intact, one
        DamagedCheckpointError (a ValueError) names each. An explicit `step` that is damaged raises DamagedCheckpointError.
        A checkpoint written with another config (other leaves or shapes than `like`) raises a
        plain ValueError without trying older ones. Nothing is deleted or moved.
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
                (state, verified, identity), reason = self._restore_path(path, like), None
                stored = _stored_step(state)
                if stored is not None and stored != s:
                    state = None
                    reason = (
                        f"its name says step {s} but it holds the state of step {stored} "
                        "(renamed or copied by hand?)"
                    )
            except _Damaged as e:
                state, verified, identity, reason = None, False, None, str(e)
            if _any_process(reason is not None):  # every process takes the same checkpoint
                reason = reason or "damaged as read by another process"
                self._damaged[path] = reason
                skipped.append((path, reason))
                continue
            for p, r in skipped:
                self._warn(p, f"skipped checkpoint {p}: {r} (nothing was deleted)")
            if not verified:
                self._warn(
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

    def restore_newest(self, like):
        """(state, step) of the newest intact checkpoint (see `restore`), or (None, None)."""
        state = self.restore(like)
        return state, (None if state is None else self.last_restored_step)

    def _steps(self, manager) -> list[int]:
        return sorted(s for s in manager.all_steps() if self._complete(self._path(manager, s)))

    def _warn(self, path: str, line: str) -> None:
        key = f"{path}\0{line}"
        if key not in self._reported:
            self._reported.add(key)
            self.warn(line)

    def _restore_path(self, path: str, like):
        """(the state in step directory `path`, whether checksums verified it, the identity of the
        run that wrote it or None); _Damaged if it cannot be read back intact, ValueError if it
        was written for another tree than `like`."""
        names, error = _attempt("unreadable directory", lambda: _names(path))
        if error:
            raise _Damaged(error)
        if not names:
            raise _Damaged("empty directory, not a checkpoint")
        if STATE_ITEM in names:
            item, legacy = STATE_ITEM, False
        elif LEGACY_ITEM in names:
            item, legacy = LEGACY_ITEM, True
        else:
            raise _Damaged(f"no {STATE_ITEM}/ item in it, not a finished checkpoint")
        checkpointer = ocp.Checkpointer(
            ocp.CompositeCheckpointHandler(
                **{
                    item: ocp.StandardCheckpointHandler(),
                    CHECKSUM_ITEM: ocp.JsonCheckpointHandler(),
                }
            )
        )
        try:
            with _silenced():
                saved = self._saved_leaves(checkpointer, path, item)
                doc = None if legacy else self._read_checksums(checkpointer, path, saved)
                self._check_fits(path, saved, like)
                target = _abstract(like, {n: dtype for n, (_, dtype) in saved.items()})
                args = ocp.args.Composite(**{item: ocp.args.StandardRestore(target)})
                restored, error = _attempt(
                    "unreadable array data", lambda: checkpointer.restore(path, args=args)[item]
                )
                if error:
                    raise _Damaged(error)
        finally:
            checkpointer.close()
        if doc is not None:
            self._verify(restored, doc["leaves"])
        state = jax.tree.map(
            lambda x, t: x if x.dtype == t.dtype else x.astype(t.dtype), restored, _abstract(like)
        )
        return state, doc is not None, None if doc is None else doc.get("run")

    @staticmethod
    def _saved_leaves(checkpointer, path: str, item: str) -> dict:
        """{leaf name: (shape, dtype)} from orbax's metadata of `item`."""

        def read():
            tree = checkpointer.metadata(path).item_metadata[item]
            leaves = jax.tree_util.tree_flatten_with_path(getattr(tree, "tree", tree))[0]
            return {_name(p): (tuple(m.shape), jnp.dtype(m.dtype)) for p, m in leaves}

        out, error = _attempt("unreadable metadata", read)
        if error:
            raise _Damaged(error)
        if not out:
            raise _Damaged("unreadable metadata (no arrays listed)")
        return out

    @staticmethod
    def _read_checksums(checkpointer, path: str, saved: dict) -> dict:
        """The checksum document {"leaves": {name: {shape, dtype, crc32}}, "run": identity?}."""

        def read():
            args = ocp.args.Composite(**{CHECKSUM_ITEM: ocp.args.JsonRestore()})
            doc = checkpointer.restore(path, args=args)[CHECKSUM_ITEM]
            sums = doc["leaves"]
            return doc, {n: (tuple(v["shape"]), jnp.dtype(v["dtype"])) for n, v in sums.items()}

        value, error = _attempt("missing or unreadable checksums", read)
        if error:
            raise _Damaged(error)
        doc, listed = value
        if listed != saved:
            raise _Damaged("its checksums and orbax metadata list different arrays")
        return doc

    @staticmethod
    def _check_fits(path: str, saved: dict, like) -> None:
        """ValueError when the checkpoint's leaves or shapes are not those of `like`."""
        want = {n: tuple(np.shape(x)) for n, x in _named_leaves(like).items()}
        have = {n: shape for n, (shape, _) in saved.items()}
        if want == have:
            return
        only_ckpt = sorted(set(have) - set(want))
        only_here = sorted(set(want) - set(have))
        shapes = [n for n in sorted(set(have) & set(want)) if have[n] != want[n]]
        if shapes:
            n = shapes[0]
            detail = f"{n} has shape {have[n]} in the checkpoint but {want[n]} here"
        else:
            detail = (
                f"{len(only_ckpt)} arrays only in the checkpoint (e.g. "
                f"{only_ckpt[0] if only_ckpt else '-'}), {len(only_here)} only here (e.g. "
                f"{only_here[0] if only_here else '-'})"
            )
        raise ValueError(
            f"checkpoint {path} cannot be restored into this config's train state ({detail}); "
            "it was written with another config: rerun with the config it was trained with "
            "(saved as config.json in the work directory), or use a fresh --workdir"
        )

    @staticmethod
    def _verify(restored, sums: dict) -> None:
        bad = [
            n
            for n, x in _named_leaves(restored).items()
            if sums[n]["crc32"] is not None
            and (a := _host(x)) is not None
            and _crc32(a) != sums[n]["crc32"]
        ]
        if bad:
            more = f" and {len(bad) - 1} more arrays" if len(bad) > 1 else ""
            raise _Damaged(f"checksum mismatch in {bad[0]}{more}")

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
        with self._writing():
            self.snapshots.wait_until_finished()
            self.preemption.wait_until_finished()

    @contextlib.contextmanager
    def _writing(self):
        """Turns a failed write of the storage (full disk, quota, read-only or vanished work
        directory) into one StorageError; orbax's thread tracebacks stay off the terminal (absl
        debug log). Pending saves are let finish (or fail) first, so the message names the
        newest checkpoint really on disk; the partial step directories are removed (orbax
        never lists them)."""
        try:
            with _silenced():
                try:
                    yield
                except Exception as e:
                    if fs.storage_failure(e) is None:
                        raise
                    for manager in (self.snapshots, self.preemption):
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
            if self._vanished():  # removed under the save (`rm -rf` while it was writing)
                self._remove_recreated()
                raise StorageError(
                    self._vanished_message(f"step {m[1]}" if m else "a checkpoint")
                ) from None
            what = f"checkpoint step {m[1]}" if m else "a checkpoint"
            raise StorageError(self._cannot_write(reason, what)) from None

    def _vanished(self) -> bool:
        """The work directory is gone, or another one stands at its path."""
        return self._dir_id is not None and _dir_id(self.workdir) != self._dir_id

    def _remove_recreated(self) -> None:
        """Undoes what a save did after the work directory vanished under it: orbax created the
        path again for its step. Removed only when it holds nothing but checkpoint directories
        (another program's files there are left alone)."""
        root = self.workdir
        if fs.is_remote(root) or not os.path.isdir(root):
            return
        if set(os.listdir(root)) <= {SNAPSHOT_DIR, PREEMPTION_DIR}:
            shutil.rmtree(root, ignore_errors=True)

    def _vanished_message(self, what: str) -> str:
        return (
            f"the work directory {self.workdir} vanished while this run was using it (removed or "
            f"moved; {what} was not saved, and nothing was recreated in its place). Put it back "
            "(or start afresh in another --workdir) and rerun the same command"
        )

    def _cannot_write(self, reason: str, what: str) -> str:
        finished = []  # (step, path) of the step directories orbax finished (renamed from tmp)
        for name in (SNAPSHOT_DIR, PREEMPTION_DIR):
            root = fs.path(os.path.join(self.workdir, name))
            for p in root.iterdir() if root.is_dir() else ():
                if ".orbax-checkpoint-tmp" in p.name:  # partial: give the space back
                    shutil.rmtree(p, ignore_errors=True)
                elif p.name.isdigit() and self._complete(os.fspath(p)):
                    finished.append((int(p.name), os.fspath(p)))
        self._saved = {p: s for p, s in self._saved.items() if (s, p) in finished}
        self._last_saved = max((s, p) for p, s in self._saved.items())[1] if self._saved else None
        newest = max(finished)[1] if finished else None
        free = fs.free_space(self.workdir)
        space = (
            "" if free is None else f"; {fs.size_text(free)} free there without its partial files"
        )
        need = (
            f", and a checkpoint of this run takes {fs.size_text(fs.tree_size(newest))}"
            if newest
            else ""
        )
        return (
            f"cannot write {what} in {self.workdir} ({reason}){space}{need}. "
            "Make room (or give the work directory a larger disk) and rerun the same command: it "
            "resumes from "
            + (f"the newest checkpoint, {newest}" if newest else "the start (no checkpoint yet)")
            + "; nothing already written was touched"
        )

    def close(self) -> None:
        try:
            self.snapshots.close()
        finally:
            self.preemption.close()
            if self._unpin is not None:
                self._unpin()

    def __enter__(self) -> Checkpoints:
        return self

    def __exit__(self, *exc) -> None:
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


def restore_ema(ckpts: Checkpoints, like, step: int | None = None):
    """(EMA params, step) of checkpoint `step` (default: the newest intact one); `like` is the
    train state's structure (abstract or concrete)."""
    require_checkpoint(ckpts)
    state = ckpts.restore(like, step)
    return state.ema_params, int(_host(state.step))
