"""Paths of work directories, data and statistics files: local, or remote (`gs://`, `s3://`)
through etils.epath (the abstraction orbax uses; remote schemes need gcsfs / s3fs installed).

    fs.path("gs://bucket/run") / "config.json"    # an epath.Path
    fs.write_bytes(p, data); fs.save_npz(p, x=x); fs.load_npz(p) -> {name: array}

Writes are atomic: a local file is written next to its target and renamed over it; a remote
object upload is atomic by itself. Object stores have no append, no lock, no folders and no
rename: metrics_log gives each writer its own objects, workdir.RunLock is local only, `move` copies
object by object, and gcsfs's cached listings are dropped (`forget_listings`) wherever another
process's writes must be seen.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import re
import shutil
from collections.abc import Callable

import numpy as np
from etils import epath
from numpy.typing import ArrayLike

StrPath = str | os.PathLike[str]  # a local path, a gs:// or s3:// URL, or an epath.Path

# fsspec's read-ahead logs the traceback of a failed fetch (an object deleted while it was read,
# e.g. a preemption checkpoint rolled by a training beside an eval) at ERROR, then raises the
# same error to the reader, which says it in one line (checkpoint: "removed while it was read").
logging.getLogger("fsspec.prefetcher").setLevel(logging.CRITICAL)


def is_remote(p: StrPath) -> bool:
    return "://" in os.fspath(p)


_SCHEMES = ("gs", "s3", "gcs", "az", "hf", "http", "https")


def _refuse_a_broken_url(p: str) -> None:
    """`gs:/bucket/x` or `gs:bucket/x` (a slash missing): one ValueError, not a local folder
    named `gs:` created in the current directory."""
    scheme, colon, rest = p.partition(":")
    if colon and scheme.lower() in _SCHEMES and not rest.startswith("//"):
        meant = f"{scheme}://{rest.lstrip('/')}"
        raise ValueError(
            f"{p} looks like a {scheme}:// URL with a slash missing; write {meant} (or "
            f"./{p} for a local folder of that name)"
        )


def path(p: StrPath) -> epath.Path:
    """`p` as an epath.Path; local paths are made absolute (`~` expanded). A URL with a slash
    missing (`gs:/bucket`) raises ValueError."""
    p = os.fspath(p)
    _refuse_a_broken_url(p)
    return epath.Path(p if is_remote(p) else os.path.abspath(os.path.expanduser(p)))


def forget_listings(p: StrPath) -> None:
    """Drops the directory listings that the file system of remote `p` has cached (gcsfs keeps
    them for the life of the process: another process's new objects would stay unseen). Every
    cached instance of the scheme's fsspec class: etils.epath opens its own."""
    if not is_remote(p):
        return
    import fsspec

    cls = fsspec.get_filesystem_class(os.fspath(p).split("://", 1)[0])
    for instance in list(getattr(cls, "_cache", {}).values()):
        instance.invalidate_cache()


def move(src: StrPath, dst: StrPath) -> None:
    """Moves file or directory `src` to `dst` (missing parents made). Local: one rename. Remote:
    an object store has no folders and no rename, so each object is copied then deleted; not
    atomic (a kill midway leaves part in each place, both readable as what they are)."""
    source, target = path(src), path(dst)
    if not is_remote(source):
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        return
    from fsspec.core import url_to_fs

    fsys, s = url_to_fs(os.fspath(source))
    _, d = url_to_fs(os.fspath(target))
    fsys.mv(s, d, recursive=source.is_dir())
    forget_listings(source)


def dir_id(p: StrPath) -> tuple[int, int] | None:
    """(st_dev, st_ino) of local directory `p`: tells it from another made again at its path.
    None if it does not exist, or is remote (an object store's folders have no identity)."""
    if is_remote(p):
        return None
    try:
        st = os.stat(os.fspath(p))
    except OSError:
        return None
    return st.st_dev, st.st_ino


def pin_dir(p: StrPath) -> Callable[[], None] | None:
    """Keeps local directory `p` open (so a directory made again at its path cannot reuse its
    inode); returns the function that lets it go, or None for a remote or missing one."""
    if dir_id(p) is None:
        return None
    fd = os.open(os.fspath(p), os.O_RDONLY | os.O_DIRECTORY)
    return lambda: os.close(fd)


def remove_tree(p: StrPath) -> None:
    """Removes file or directory `p` and everything under it; nothing if it is gone."""
    q = path(p)
    if q.is_dir():
        q.rmtree(missing_ok=True)
    else:
        q.unlink(missing_ok=True)


def files_under(root: StrPath) -> list[str]:
    """Every file below directory `root`, recursively, as full paths (a remote one keeps its
    scheme: gcsfs's walk names objects `bucket/key`), sorted."""
    top: str = os.fspath(path(root))
    scheme = top.split("://", 1)[0] + "://" if is_remote(top) else ""
    out = []
    for d, _, names in path(top).walk():
        d = os.fspath(d)
        if scheme and not d.startswith(scheme):
            d = scheme + d
        out += [f"{d.rstrip('/')}/{n}" for n in names]
    return sorted(out)


def write_bytes(p: StrPath, data: bytes) -> None:
    """Writes `data` to `p` atomically, creating the parent directory."""
    target = path(p)
    target.parent.mkdir(parents=True, exist_ok=True)
    if is_remote(target):
        target.write_bytes(data)
        return
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, target)
    except OSError as e:  # a full disk: no half-written file is left beside the target
        tmp.unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror, os.fspath(target)) from e
    except BaseException:  # Ctrl-C or SIGTERM mid-write: neither
        tmp.unlink(missing_ok=True)
        raise


def write_text(p: StrPath, text: str) -> None:
    write_bytes(p, text.encode())


def save_npz(p: StrPath, **arrays: ArrayLike) -> None:
    """np.savez of `arrays` to `p`, atomically."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]  # mypy matches **arrays to allow_pickle
    write_bytes(p, buf.getvalue())


def load_npz(p: StrPath) -> dict[str, np.ndarray]:
    """Every array of the .npz file `p` (read whole)."""
    with np.load(io.BytesIO(path(p).read_bytes()), allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


# A failed write the operator fixes on the storage side (space, quota, permissions, a vanished or
# read-only directory), not in the program.
_STORAGE_ERRNOS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.ENOENT,
    errno.EIO,
}


def storage_failure(e: BaseException | None) -> str | None:
    """The OS's reason ('No space left on device', ...) when `e` or an exception it came from is
    a failed read or write of the storage itself, else None. TensorStore's errors (orbax) carry
    the errno as [os_error_code='28'] in their message."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in _STORAGE_ERRNOS:
            return os.strerror(e.errno)
        m = re.search(r"os_error_code='?(\d+)", str(e))
        if m and int(m[1]) in _STORAGE_ERRNOS:
            return os.strerror(int(m[1]))
        e = e.__cause__ or e.__context__
    return None


def size_text(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def free_space(p: StrPath) -> int | None:
    """Bytes free for this user on the file system of local path `p` (its nearest existing
    parent); None for remote paths or when it cannot be told."""
    if is_remote(p):
        return None
    q = os.path.abspath(os.fspath(p))
    while not os.path.exists(q) and os.path.dirname(q) != q:
        q = os.path.dirname(q)
    try:
        return shutil.disk_usage(q).free
    except OSError:
        return None


def tree_size(p: StrPath) -> int:
    """Bytes of the files under local path `p` (0 if it is missing or remote)."""
    if is_remote(p):
        return 0
    total = 0
    for root, _, files in os.walk(os.fspath(p)):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total
