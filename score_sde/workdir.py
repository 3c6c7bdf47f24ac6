"""The work directory of a run: created and checked before anything is written to it.

Layout (see README): config.json, metrics.jsonl, tensorboard/, checkpoints/<step>,
checkpoints-meta/<step>, samples/, eval/<step>/, classifier/.
"""

from __future__ import annotations

import json
import os


def prepare(workdir: str) -> str:
    """Creates `workdir` and checks it is writable; returns its absolute path.

    Raises one ValueError naming the path and the fix.
    """
    if not str(workdir).strip():
        raise ValueError("--workdir is empty; pass a directory, e.g. --workdir=./runs/mine")
    workdir = os.path.abspath(os.path.expanduser(workdir))
    try:
        os.makedirs(workdir, exist_ok=True)
        probe = os.path.join(workdir, f".write_test_{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise ValueError(
            f"--workdir {workdir} is not writable ({e.strerror}); pass a directory you can write "
            "to, e.g. --workdir=./runs/mine"
        ) from None
    return workdir


def write_json(path: str, obj) -> None:
    """Writes `obj` as indented JSON (creating the parent directory)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
