"""Metrics to stdout (a progress line), a JSONL file and TensorBoard event files.

The TensorBoard writer is self-contained (about 40 lines: the TFRecord framing with masked CRC-32C
and the two protobuf messages it needs, `Event` and `Summary.Value.simple_value`), so logging needs
neither TensorFlow nor tensorboardX. Only process 0 writes; other processes get a no-op logger.
"""

from __future__ import annotations

import json
import math
import os
import socket
import struct
import sys
import time

# ---------------------------------------------------------------------------- TensorBoard events


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> int:
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field_bytes(num: int, payload: bytes) -> bytes:
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def _event(wall_time: float, step: int, *, file_version: str | None = None, scalars=None) -> bytes:
    """Serialized tensorflow.Event {1: wall_time, 2: step, 3: file_version, 5: summary}."""
    msg = _varint(1 << 3 | 1) + struct.pack("<d", wall_time) + _varint(2 << 3) + _varint(step)
    if file_version is not None:
        msg += _field_bytes(3, file_version.encode())
    if scalars:
        values = b"".join(
            _field_bytes(
                1, _field_bytes(1, tag.encode()) + _varint(2 << 3 | 5) + struct.pack("<f", v)
            )
            for tag, v in scalars.items()
        )
        msg += _field_bytes(5, values)
    return msg


class EventFileWriter:
    """Appends scalar summaries to `logdir/events.out.tfevents.<time>.<host>`."""

    def __init__(self, logdir: str):
        os.makedirs(logdir, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}"
        self.path = os.path.join(logdir, name)
        self._f = open(self.path, "ab")
        self._write(_event(time.time(), 0, file_version="brain.Event:2"))

    def _write(self, record: bytes) -> None:
        header = struct.pack("<Q", len(record))
        self._f.write(header + struct.pack("<I", _masked_crc(header)))
        self._f.write(record + struct.pack("<I", _masked_crc(record)))
        self._f.flush()

    def scalars(self, step: int, values: dict[str, float]) -> None:
        self._write(
            _event(time.time(), int(step), scalars={k: float(v) for k, v in values.items()})
        )

    def close(self) -> None:
        self._f.close()


def read_events(path: str) -> list[tuple[int, dict[str, float]]]:
    """(step, {tag: value}) of every scalar event in an event file (for tests)."""
    out = []
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos < len(data):
        (n,) = struct.unpack_from("<Q", data, pos)
        rec = data[pos + 12 : pos + 12 + n]
        if struct.unpack_from("<I", data, pos + 12 + n)[0] != _masked_crc(rec):
            raise ValueError(f"{path}: corrupt record at byte {pos}")
        pos += 16 + n
        step, scalars = _parse_event(rec)
        if scalars:
            out.append((step, scalars))
    return out


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def _fields(buf: bytes):
    i = 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _read_varint(buf, i)
        elif wire == 1:
            v, i = buf[i : i + 8], i + 8
        elif wire == 5:
            v, i = buf[i : i + 4], i + 4
        else:
            n, i = _read_varint(buf, i)
            v, i = buf[i : i + n], i + n
        yield num, v


def _parse_event(rec: bytes):
    step, scalars = 0, {}
    for num, v in _fields(rec):
        if num == 2:
            step = v
        elif num == 5:
            for _, value in _fields(v):
                fields = dict(_fields(value))
                scalars[fields[1].decode()] = struct.unpack("<f", fields[2])[0]
    return step, scalars


# ---------------------------------------------------------------------------- the logger


class MetricsLogger:
    """stdout + `<workdir>/metrics.jsonl` + TensorBoard events in `<workdir>/tensorboard/`; a
    context manager that closes its files on exit."""

    def __init__(
        self, workdir: str, *, enabled: bool = True, total_steps: int | None = None, stream=None
    ):
        self.enabled = enabled
        self.total_steps = total_steps
        self.stream = stream or sys.stdout
        self._jsonl = self._tb = None
        if enabled:
            self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
            self._tb = EventFileWriter(os.path.join(workdir, "tensorboard"))
        self._last = None  # (time, step) of the previous progress line

    def write(self, step: int, metrics: dict[str, float], *, prefix: str = "") -> None:
        """Records scalars (JSONL + TensorBoard) without printing."""
        if not self.enabled:
            return
        metrics = {prefix + k: float(v) for k, v in metrics.items()}
        self._jsonl.write(json.dumps({"step": int(step), "time": time.time(), **metrics}) + "\n")
        self._jsonl.flush()
        self._tb.scalars(step, metrics)

    def progress(self, step: int, metrics: dict[str, float], *, batch_size: int) -> None:
        """Writes training metrics plus steps/s, img/s, ETA and prints one progress line."""
        now = time.time()
        extra = {}
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
                f"{extra['examples_per_sec']:.0f} img/s",
            ]
            if self.total_steps and step < self.total_steps:
                eta = (self.total_steps - step) / extra["steps_per_sec"]
                parts.append(f"ETA {_hms(eta)}")
        self.info("  ".join(parts))

    def info(self, text: str) -> None:
        if self.enabled:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self._jsonl:
            self._jsonl.close()
            self._tb.close()
            self._jsonl = self._tb = None

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _hms(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
