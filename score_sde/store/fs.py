"""Paths of work directories, data and statistics files: local, or remote (`gs://`, `s3://`)
through etils.epath (the abstraction orbax uses; remote schemes need gcsfs / s3fs installed).

    fs.path("gs://bucket/run") / "config.json"    # an epath.Path
    fs.write_bytes(p, data); fs.save_npz(p, x=x); fs.load_npz(p) -> {name: array}

Writes are atomic: a local file is written next to its target and renamed over it; a remote
object upload is atomic by itself. Remote file systems have no append and no locks: see
metrics_log (rewrites its files) and workdir.RunLock (local only).
"""

from __future__ import annotations

import io
import os

import numpy as np
from etils import epath


def is_remote(p) -> bool:
    return "://" in os.fspath(p)


def path(p) -> epath.Path:
    """`p` as an epath.Path; local paths are made absolute (`~` expanded)."""
    p = os.fspath(p)
    return epath.Path(p if is_remote(p) else os.path.abspath(os.path.expanduser(p)))


def write_bytes(p, data: bytes) -> None:
    """Writes `data` to `p` atomically, creating the parent directory."""
    p = path(p)
    p.parent.mkdir(parents=True, exist_ok=True)
    if is_remote(p):
        p.write_bytes(data)
        return
    tmp = p.with_name(f".{p.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, p)


def write_text(p, text: str) -> None:
    write_bytes(p, text.encode())


def save_npz(p, **arrays) -> None:
    """np.savez of `arrays` to `p`, atomically."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_bytes(p, buf.getvalue())


def load_npz(p) -> dict[str, np.ndarray]:
    """Every array of the .npz file `p` (read whole)."""
    with np.load(io.BytesIO(path(p).read_bytes()), allow_pickle=False) as f:
        return {k: f[k] for k in f.files}
