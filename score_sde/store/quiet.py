"""Keeping libraries' absl log lines (orbax, TFDS) off the terminal around calls whose failures
we report ourselves, in one line.

`SWAP_LOCK` guards every block that swaps process-wide state (absl's verbosity, sys.stderr,
hooks) and puts it back: one block at a time in a process, or two threads (an eval thread beside
training) could each restore what the other had swapped in, leaving absl muted or stderr
captured for good.
"""

from __future__ import annotations

import contextlib
import threading

from absl import logging

SWAP_LOCK = threading.RLock()


@contextlib.contextmanager
def absl_quiet():
    """absl log messages below FATAL are dropped inside the block."""
    with SWAP_LOCK:
        level = logging.get_verbosity()
        logging.set_verbosity(logging.FATAL)
        try:
            yield
        finally:
            logging.set_verbosity(level)
