"""The work directory of a run: created and checked before anything is written to it.

Layout (see README): config.json, metrics.jsonl, tensorboard/, checkpoints/<step>,
checkpoints-meta/<step>, samples/, eval/<step>/, classifier/, phema/<step>/ (store.phema_files).
"""

from __future__ import annotations

import errno
import json
import os
import sys
import uuid
from collections.abc import Set as AbstractSet

from score_sde.store import fs


def prepare(workdir: str) -> str:
    """Creates `workdir` (a local path, or a gs:// / s3:// URL: score_sde.store.fs) and checks it is
    writable; returns its absolute path. Raises one ValueError naming the path and the fix.
    """
    if not str(workdir).strip():
        raise ValueError("--workdir is empty; pass a directory, e.g. --workdir=./runs/mine")
    path = fs.path(workdir)
    refuse_a_file(workdir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write_test_{uuid.uuid4().hex}"  # unique: runs may share a process
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise ValueError(
                f"--workdir {path} is on a full disk ({e.strerror}); make room, or pass a "
                "directory on another disk"
            ) from None
        raise ValueError(
            f"--workdir {path} is not writable ({e.strerror or e}); pass a directory you can "
            "write to, e.g. --workdir=./runs/mine"
        ) from None
    return os.fspath(path)


def refuse_a_file(workdir: str) -> None:
    """One ValueError when `workdir` exists and is not a directory."""
    path = fs.path(workdir)
    if path.exists() and not path.is_dir():
        raise ValueError(
            f"--workdir {path} is a file, not a directory; pass a directory, e.g. "
            "--workdir=./runs/mine"
        )


def refuse_shared_folders(workdir: str, names: tuple[str, ...]) -> None:
    """One ValueError when a folder `names` of local `workdir` (its checkpoints/, ...) is a
    symbolic link into another work directory (a folder beside config.json, run.json or
    run.lock), or to a folder that a link of another work directory already names (its
    LINK_OWNER file): the two runs would save into one folder, and one's keep-last-N delete the
    other's checkpoints. A link of this work directory alone to a folder elsewhere (a bigger
    disk) is fine; it is recorded in the folder's LINK_OWNER (taken over once that work directory
    no longer links there: moved or removed)."""
    if fs.is_remote(workdir):
        return
    here = os.path.realpath(workdir)
    for name in names:
        link = os.path.join(workdir, name)
        if not os.path.islink(link):
            continue
        target = os.path.realpath(link)
        other = os.path.dirname(target)
        if other == here:
            continue
        if not any(
            os.path.lexists(os.path.join(other, f)) for f in ("config.json", "run.json", "run.lock")
        ):
            _claim_linked_folder(link, target, here, name)
            continue
        raise ValueError(
            f"{link} is a symbolic link to {target}, the {os.path.basename(target)}/ of the work "
            f"directory {other}: two work directories would save into one folder; train there "
            f"(--workdir={other}), or give this one a copy of its own (rm {link} && cp -r "
            f"{target} {link})"
        )


# In a folder that a work directory's checkpoints/ (or another folder) links to: that work
# directory's path, so that a second work directory linking there is refused.
LINK_OWNER = ".score_sde_linked_from"


def _claim_linked_folder(link: str, target: str, here: str, name: str) -> None:
    owner_file = os.path.join(target, LINK_OWNER)
    try:
        with open(owner_file) as f:
            owner = f.read().strip()
    except (FileNotFoundError, NotADirectoryError):
        owner = ""
    theirs = os.path.join(owner, name)
    if owner and owner != here and os.path.islink(theirs) and os.path.realpath(theirs) == target:
        raise ValueError(
            f"{link} and {theirs} are symbolic links to the same folder {target}: two work "
            f"directories would save into one folder; train there (--workdir={owner}), or link "
            f"this one to a folder of its own (rm {link} && mkdir {link})"
        )
    if owner != here and os.path.isdir(target):
        with open(owner_file, "w") as f:
            f.write(here + "\n")


class Additions:
    """What a run adds to a work directory, recorded before it is prepared, so that a run that
    fails before writing any checkpoint can take it back (never what existed before).

        added = Additions(workdir)      # before prepare()
        ...                             # the run fails with nothing worth keeping
        added.remove_entries(keep={"run.lock"})   # under the run's lock
        added.remove_directories()      # after the lock is released: only if left empty
    """

    def __init__(self, workdir: str):
        path = fs.path(workdir)
        self.path = path
        self.new_dirs = []  # the missing directories, deepest first
        while not path.exists():
            self.new_dirs.append(path)
            if path.parent == path:
                break
            path = path.parent
        self.before = set() if self.new_dirs else {p.name for p in self.path.iterdir()}

    def remove_entries(self, keep: AbstractSet[str] = frozenset()) -> list[str]:
        """Removes the entries of the work directory that were not there before (but `keep`);
        returns their names."""
        gone = []
        for p in self.path.iterdir() if self.path.exists() else ():
            if p.name in self.before or p.name in keep:
                continue
            if p.is_dir():
                p.rmtree()
            else:
                p.unlink()
            gone.append(p.name)
        return sorted(gone)

    def remove_directories(self) -> None:
        """Removes the directories this run created, deepest first, each only if empty."""
        for d in self.new_dirs:
            try:
                d.rmdir()
            except (OSError, ValueError):  # not empty (epath: ValueError) or gone already
                return


def write_json(path: str, obj: object) -> None:
    """Writes `obj` as indented JSON, atomically (creating the parent directory)."""
    fs.write_text(path, json.dumps(obj, indent=2))


class RunLock:
    """One run per work directory: an exclusive lock on `<dir>/<name>` holding
    {"host", "pid", "started"} (a context manager).

    The lock is an fcntl.flock on the open file, so the operating system releases it when the
    holder exits, however it dies (SIGKILL included): a lock file left behind by a dead run is
    stale and is reclaimed by the next run. A clean exit removes the file. A live holder makes
    acquire() raise one ValueError naming the host, the pid and the start time. Only process 0
    of a multi-process run takes it (the others write nothing). flock needs a local or
    lock-capable file system: on a remote one (gs://) there is no lock, said once on stderr.
    """

    def __init__(self, directory: str, name: str = "run.lock", enabled: bool = True):
        self.path = os.path.join(directory, name)
        self.enabled = enabled
        self._file = None

    def acquire(self) -> RunLock:
        import fcntl
        import socket
        import time

        if not self.enabled:
            return self
        if fs.is_remote(self.path):
            print(
                f"note: no run lock on {self.path} (remote file systems have none); make sure "
                "one run at a time uses this work directory",
                file=sys.stderr,
            )
            return self
        while True:
            f = self._open()
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):  # no locks on this file system
                    f.close()
                    if os.path.getsize(self.path) == 0:  # the empty file open() just made
                        os.unlink(self.path)
                    print(
                        f"note: no run lock on {self.path}: its file system has no working file "
                        f"locks ({e.strerror}; an NFS mount without lockd?); make sure one run at "
                        "a time uses this work directory",
                        file=sys.stderr,
                    )
                    return self
                f.seek(0)
                holder = _describe_holder(f.read())
                f.close()
                raise ValueError(
                    f"work directory {os.path.dirname(self.path)} is in use by another run "
                    f"({holder}; lock {self.path}); wait for it to finish or stop it, or pass "
                    "another --workdir"
                ) from None
            try:  # the holder we waited on may have removed the file: lock the current one
                if os.stat(self.path).st_ino == os.fstat(f.fileno()).st_ino:
                    break
            except FileNotFoundError:
                pass
            f.close()
        f.seek(0)
        f.truncate()
        info = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}
        f.write(json.dumps(info))
        f.flush()
        self._file = f
        return self

    def _open(self):
        """The lock file opened for appending; one ValueError naming the path and the fix when
        it is not a plain file this user can write (a directory, a dangling or any symbolic
        link, another user's file)."""
        fix = f"remove it (rm -r {self.path}) if no run is using this work directory"
        if os.path.islink(self.path):
            target = os.readlink(self.path)
            what = (
                "a dangling symbolic link" if not os.path.exists(self.path) else "a symbolic link"
            )
            raise ValueError(f"the run lock {self.path} is {what} (to {target}), not a file; {fix}")
        if os.path.lexists(self.path) and not os.path.isfile(self.path):
            kind = "a directory" if os.path.isdir(self.path) else "not a regular file"
            raise ValueError(f"the run lock {self.path} is {kind}; {fix}")
        try:
            return open(self.path, "a+")
        except OSError as e:
            raise ValueError(
                f"cannot open the run lock {self.path} ({e.strerror or e}); it may belong to "
                f"another user: check its owner (ls -l {self.path}), or {fix}"
            ) from None

    def release(self) -> None:
        """Removes the lock file (a run that dies leaves it: stale, reclaimed by the next)."""
        if self._file is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            self._file.close()  # closing the descriptor releases the flock
            self._file = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _describe_holder(text: str) -> str:
    import time

    try:
        info = json.loads(text)
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["started"]))
        return f"pid {info['pid']} on host {info['host']}, started {started}"
    except (ValueError, KeyError, TypeError):
        return "a run that has not written its details yet"
