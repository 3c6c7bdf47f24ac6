"""Metrics to stdout (a progress line), a JSONL file and TensorBoard (tensorboardX, no TensorFlow).

    with MetricsLogger(workdir, total_steps=n) as log:
        log.progress(step, {"training_loss": 0.9, "grad_norm": 1.2}, batch_size=128)
        log.write(step, {"eval_loss": 0.8})            # JSONL + TensorBoard scalars
        log.image(step, "samples", grid)               # uint8 [H, W, C] -> TensorBoard image

Tags are the original score_sde's: `training_loss`, `eval_loss` (plus `grad_norm`,
`steps_per_sec`, `examples_per_sec`, `eval/...` from eval mode and the `samples` grids of the
snapshots). Only process 0 writes; other processes get a disabled logger. The TensorBoard event
file is opened at the first scalar or image, so a run that records none (sample mode) leaves no
empty event file.

Several processes log to one work directory (a training and an eval job watching it). On a local
disk they append to `metrics.jsonl` (one write per line: lines interleave, none is lost; after a
line cut short by a kill or a hand edit, the next record starts on a line of its own). An object
store has no append and no lock, and a read-modify-write of one shared object loses the rows of
the writer that uploaded first: there every writer owns its objects, `metrics.d/<writer>.<part>.jsonl`
(uploaded whole at each flush, a new part every PART_ROWS rows), and an event file of its own in
`tensorboard/`. `read(workdir)` returns the rows of both layouts, in time order.

With config.logging.wandb set, `start_wandb` (train mode, once the run id is known) adds
Weights & Biases as one more sink of `write` and `image` (score_sde.store.wandb_log).
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import sys
import time
from typing import Any, TextIO

import numpy as np

from score_sde.store import fs
from score_sde.store.progress import hms

_WRITERS = itertools.count()
JSONL, REMOTE_DIR = "metrics.jsonl", "metrics.d"
PART_ROWS = 1000  # rows per object of a remote writer (each flush uploads its current part)


class _RemoteFile:
    """A file of a remote work directory opened for appending: its old content plus what is
    written, uploaded whole at every flush (object stores have no append)."""

    def __init__(self, path: str):
        self.path = path
        p = fs.path(path)
        self._data = bytearray(p.read_bytes() if p.exists() else b"")

    def write(self, data) -> None:
        self._data += data.encode() if isinstance(data, str) else data

    def flush(self) -> None:
        fs.write_bytes(self.path, bytes(self._data))

    def close(self) -> None:
        self.flush()


class _RemoteEventFiles:
    """tensorboardX's writer factory for remote schemes, through score_sde.store.fs."""

    def open(self, path):
        return _RemoteFile(path)

    def directory_check(self, path):
        pass  # object stores need no directories


class _RemoteRows:
    """This writer's rows on a remote work directory: objects `metrics.d/<writer>.<part>.jsonl`
    that no other process writes."""

    def __init__(self, workdir: str):
        writer = f"{time.time_ns():020d}-{socket.gethostname()}-{os.getpid()}-{next(_WRITERS)}"
        self._base = os.path.join(workdir, REMOTE_DIR, writer)
        self._part, self._rows = 0, list[str]()

    def write(self, line: str) -> None:
        if len(self._rows) == PART_ROWS:
            self._part, self._rows = self._part + 1, []
        self._rows.append(line)

    def flush(self) -> None:
        if self._rows:
            fs.write_text(f"{self._base}.{self._part:05d}.jsonl", "".join(self._rows))

    def close(self) -> None:
        self.flush()


def _rows(text: str) -> tuple[list[dict], int]:
    """(the records of JSONL `text`, the number of unreadable lines: one cut short by a kill)."""
    records, bad = [], 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            records.append(record)
        else:
            bad += 1
    return records, bad


def _ends_mid_line(path: str) -> bool:
    """Whether local file `path` ends without a newline (its last line cut short by a kill or an
    edit by hand)."""
    with open(path, "rb") as f:
        if f.seek(0, os.SEEK_END) == 0:
            return False
        f.seek(-1, os.SEEK_END)
        return f.read(1) != b"\n"


def read(workdir: str) -> list[dict] | None:
    """Every record logged in `workdir` ({"step", "time", tag: value}): `metrics.jsonl` in file
    order, or with the remote writers' objects, all merged by time. Unreadable lines (one cut
    short by a kill) are skipped, said on stderr. None when nothing was logged."""
    main = fs.path(os.path.join(workdir, JSONL))
    parts = fs.path(os.path.join(workdir, REMOTE_DIR))
    fs.forget_listings(workdir)  # another process's objects (remote only)
    texts = [main.read_text()] if main.is_file() else []
    if parts.is_dir():
        texts += [fs.path(f).read_text() for f in fs.files_under(parts)]
    if not texts:
        return None
    records, bad = [], 0
    for text in texts:
        got, b = _rows(text)
        records += got
        bad += b
    if len(texts) > 1:
        records.sort(key=lambda r: r.get("time", 0.0))  # stable: file order within a writer
    if bad:
        print(
            f"note: skipped {bad} unreadable line(s) of the metrics in {workdir}", file=sys.stderr
        )
    return records


def _register_remote_event_files() -> None:
    from tensorboardX import record_writer

    for scheme in ("gs", "s3"):
        record_writer.register_writer_factory(scheme, _RemoteEventFiles())


class MetricsLogger:
    """stdout + `<workdir>/metrics.jsonl` + TensorBoard events in `<workdir>/tensorboard/`; a
    context manager that closes its files on exit."""

    def __init__(
        self,
        workdir: str,
        *,
        enabled: bool = True,
        total_steps: int | None = None,
        stream: TextIO | None = None,
    ):
        self.enabled = enabled
        self.workdir = workdir
        self.total_steps = total_steps
        self.stream = stream or sys.stdout
        self._jsonl: Any = None  # an open file, or _RemoteRows
        self._tb: Any = None
        self._wandb: Any = None  # a wandb_log.WandbRun once start_wandb ran
        self._cut = False  # metrics.jsonl ends in a line cut short: the next record ends it first
        if enabled:
            remote = fs.is_remote(workdir)
            path = os.path.join(workdir, JSONL)
            self._jsonl = _RemoteRows(workdir) if remote else open(path, "a")
            self._cut = not remote and _ends_mid_line(path)
        # (time.monotonic(), step) of the previous progress line: rates ignore wall-clock steps
        self._last: tuple[float, int] | None = None

    def _writer(self):
        if self._tb is None:
            from tensorboardX import SummaryWriter

            if fs.is_remote(self.workdir):
                _register_remote_event_files()
            # tensorboardX names event files by the second: the suffix keeps a second logger
            # opened within the same second (eval right after training) from truncating it
            self._tb = SummaryWriter(
                os.path.join(self.workdir, "tensorboard"),
                flush_secs=10,
                filename_suffix=f".{os.getpid()}.{next(_WRITERS)}",
            )
        return self._tb

    def write(self, step: int, metrics: dict[str, float], *, prefix: str = "") -> None:
        """Records scalars (JSONL + TensorBoard) without printing."""
        if not self.enabled:
            return
        metrics = {prefix + k: float(v) for k, v in metrics.items()}
        line = json.dumps({"step": int(step), "time": time.time(), **metrics}) + "\n"
        if self._cut:  # not glued onto the cut line: that one stays unreadable, this one is read
            line, self._cut = "\n" + line, False
        self._jsonl.write(line)
        self._jsonl.flush()
        writer = self._writer()
        for tag, value in metrics.items():
            writer.add_scalar(tag, value, int(step))
        writer.flush()
        if self._wandb is not None:
            self._wandb.log(step, metrics)

    def image(self, step: int, tag: str, image: np.ndarray) -> None:
        """An image summary of a uint8 image [H, W] or [H, W, C] (C = 1, 3 or 4; gray is stored
        as RGB), PNG-encoded by tensorboardX's SummaryWriter.add_image."""
        if not self.enabled:
            return
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise ValueError(f"image must be uint8 [H, W(, C)], got {image.dtype} {image.shape}")
        writer = self._writer()
        writer.add_image(tag, image, int(step), dataformats="HWC"[: image.ndim])
        writer.flush()
        if self._wandb is not None:
            self._wandb.image(step, tag, image)

    def start_wandb(
        self, *, project: str, name: str, mode: str, entity: str, run_id: str, config: dict
    ) -> None:
        """From here on, `write` and `image` also go to the W&B run `run_id` of `project`
        (score_sde.store.wandb_log.start), finished at `close`. Nothing when disabled."""
        if not self.enabled or not project:
            return
        from score_sde.store import wandb_log

        self._wandb, note = wandb_log.start(
            project=project,
            name=name,
            mode=mode,
            entity=entity,
            workdir=self.workdir,
            run_id=run_id,
            config=config,
        )
        if note:
            self.info(note)

    def progress(
        self, step: int, metrics: dict[str, float], *, batch_size: int, unit: str = "img"
    ) -> None:
        """Writes training metrics plus steps/s, examples/s (in `unit`/s), ETA and prints one
        progress line."""
        now = time.monotonic()
        extra: dict[str, float] = {}
        if self._last is not None and step > self._last[1]:
            rate = (step - self._last[1]) / max(now - self._last[0], 1e-9)
            extra = {"steps_per_sec": rate, "examples_per_sec": rate * batch_size}
        self._last = (now, step)
        self.write(step, {**metrics, **extra})
        if not self.enabled:
            return
        parts = [f"step {step}"]
        if self.total_steps:
            frac = min(step / self.total_steps, 1.0)
            bar = "#" * int(20 * frac) + "." * (20 - int(20 * frac))
            parts = [f"[{bar}] {step}/{self.total_steps}"]
        parts += [f"{k} {v:.4g}" for k, v in metrics.items()]
        if extra:
            parts += [
                f"{extra['steps_per_sec']:.1f} steps/s",
                f"{extra['examples_per_sec']:.0f} {unit}/s",
            ]
            if self.total_steps and step < self.total_steps:
                eta = (self.total_steps - step) / extra["steps_per_sec"]
                parts.append(f"ETA {hms(eta)}")
        self.info("  ".join(parts))

    def info(self, text: str) -> None:
        if self.enabled:
            print(text, file=self.stream, flush=True)

    def close(self, *, failed: bool = False) -> None:
        """Closes the files (and finishes the W&B run, marked failed when `failed`)."""
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._wandb is not None:
            self._wandb.finish(failed=failed)
            self._wandb = None

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(failed=exc_type is not None)
