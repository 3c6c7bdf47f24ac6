"""What we need of orbax beyond its defaults: the state's type handlers (small replicated arrays
written whole), its noise kept off the terminal, and one short reason for its errors."""

from __future__ import annotations

import contextlib
import gc
import io
import logging as py_logging
import re
import sys
import threading
import time
import warnings
from collections.abc import Callable

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from score_sde.store import quiet

# Orbax's default on CPU and TPU writes a replicated array from all replicas, each a slice cut on
# device by an eagerly compiled op per shape: the first save of the 189k-parameter digits state on
# 4 CPU devices made 2,456 slices and spent 4.8 of its 7.8 s there. Arrays under 16 MiB per
# replica are written whole from one replica (the same files); larger ones stay replica-parallel.
REPLICA_PARALLEL_MIN_BYTES = 16 << 20


def _type_handlers():
    """(a TypeHandlerRegistry for saving train states, whether small arrays are written whole).
    Our own registry, handed to our save handler only: orbax's process-wide one is untouched.
    Orbax's defaults where this orbax lacks the option (0.12's metadata store layout)."""
    try:
        from orbax.checkpoint._src.metadata import array_metadata_store

        array = ocp.type_handlers.ArrayHandler(
            array_metadata_store=array_metadata_store.Store(),  # as orbax's default: PRNG keys
            min_slice_bytes_for_replica_parallel=REPLICA_PARALLEL_MIN_BYTES,
        )
        whole = True
    except (ImportError, TypeError):
        array, whole = ocp.type_handlers.ArrayHandler(), False
    scalar = ocp.type_handlers.ScalarHandler()
    registry = ocp.type_handlers.create_type_handler_registry(
        (int, scalar),
        (float, scalar),
        (bytes, scalar),
        (np.number, scalar),
        (np.ndarray, ocp.type_handlers.NumpyHandler()),
        (jax.Array, array),
        (str, ocp.type_handlers.StringHandler()),
    )
    return registry, whole


TYPE_HANDLERS, SMALL_ARRAYS_WHOLE = _type_handlers()


def state_handler() -> ocp.PyTreeCheckpointHandler:
    """The handler that writes a train state (the layout of orbax's StandardSave)."""
    return ocp.PyTreeCheckpointHandler(type_handler_registry=TYPE_HANDLERS)


@contextlib.contextmanager
def silenced(settle: float = 0.5, patience: float = 3.0):
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


def _ignore(_) -> None:
    return None


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
        sys.unraisablehook = _ignore
        threading.excepthook = _ignore
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


def reason(e: BaseException) -> str:
    """One short line for an orbax / TensorStore error: its deepest cause, without the spec or
    the database's location (the caller names the checkpoint)."""
    while e.__cause__ is not None:
        e = e.__cause__
    text = " ".join(str(e).split()).split(" See full TensorStore details")[0]
    text = re.sub(r' in OCDBT database at (local file "[^"]*"|\S+:)', "", text)
    if len(text) > 200:
        text = text[:200].rsplit(" ", 1)[0] + " ..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def attempt(what: str, fn: Callable):
    """(fn(), None), or (None, "what (reason)") when it raises. Nothing of the exception is kept:
    its traceback holds orbax's abandoned coroutines, which must be collected inside `silenced`."""
    try:
        return fn(), None
    except Exception as e:  # orbax and TensorStore raise many types; one reason
        return None, f"{what} ({reason(e)})"
