"""Progress of long loops: a tqdm bar on a terminal, plain periodic lines anywhere else (a log
file, a pipe), so that logs hold no carriage-return clutter.

    with progress.bar(total=50_000, desc="Inception features", unit="img") as bar:
        bar.update(250)

No silent minutes: plain lines start with a line at once, and while one update is awaited (a
compilation, a long ODE solve) a line every KEEPALIVE seconds says that the loop is still working;
a terminal bar is redrawn as often (its elapsed time moves).
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TextIO, TypeVar

from tqdm import tqdm

T = TypeVar("T")

# The longest silence (seconds) of a bar while its loop waits on one long update.
KEEPALIVE = 20.0


class _KeepAlive:
    """A daemon thread calling `ping()` every `interval` seconds until `stop()`."""

    def __init__(self, ping: Callable[[], None], interval: float):
        self._stopped = threading.Event()

        def loop() -> None:
            while not self._stopped.wait(interval):
                ping()

        self._thread = threading.Thread(target=loop, daemon=True, name="progress-keepalive")
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()


class TerminalBar(tqdm):
    """A tqdm bar redrawn every KEEPALIVE seconds while its loop waits on one long update (its
    elapsed time moves), until closed."""

    def __init__(self, *args: Any, **kw: Any):
        super().__init__(*args, **kw)
        self._keepalive = _KeepAlive(self.refresh, KEEPALIVE)

    def close(self) -> None:
        keepalive = getattr(self, "_keepalive", None)  # None: __init__ failed before it
        if keepalive is not None:
            keepalive.stop()
        super().close()


def bar(
    total: int | None,
    desc: str,
    unit: str,
    *,
    enabled: bool = True,
    stream: TextIO | None = None,
    **kw: Any,
) -> tqdm | Lines:
    """A tqdm bar on `stream` (default stderr) when it is a terminal, else `Lines`; `enabled`
    False (other processes) shows nothing. Both have `update(n)`, `n`, `close()` and `with`."""
    stream = sys.stderr if stream is None else stream
    if not enabled:
        return tqdm(total=total, disable=True)
    if getattr(stream, "isatty", lambda: False)():
        initial = kw.get("initial", 0)
        return TerminalBar(
            total=total, desc=desc, unit=unit, leave=False, file=stream, initial=initial
        )
    return Lines(total, desc, unit, stream, **kw)


def wrap(items: Iterable[T], desc: str, unit: str, **kw: Any) -> Iterator[T]:
    """Yields `items`, showing their progress as `bar` does."""
    items = list(items)
    with bar(len(items), desc, unit, **kw) as b:
        for item in items:
            yield item
            b.update(1)


class Lines:
    """Plain progress lines: one at once (`desc: 0/total unit, starting`), one after the first
    update (the rate and ETA a log reader wants early), then one per `interval` seconds at most:
    `desc: n/total unit (rate unit/s, ETA 1:02:03)`; while no update comes, `desc: n/total unit,
    still working (25 s since the last line)` every `keepalive` seconds."""

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str,
        stream: TextIO,
        interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        initial: int = 0,
        keepalive: float | None = None,
    ):
        self.total, self.desc, self.unit, self.stream = total, desc, unit, stream
        self.interval, self.clock = interval, clock
        self.n = self.initial = initial
        self.start, self.last = clock(), -math.inf
        self.postfix = ""
        self._lock = threading.Lock()
        self._print(f"{self._done()} {self.unit}, starting")
        self.said = self.start  # when the last line was printed
        keepalive = KEEPALIVE if keepalive is None else keepalive
        self._keepalive = _KeepAlive(self._ping, keepalive / 2) if keepalive > 0 else None
        self._quiet = keepalive

    def _done(self) -> str:
        return f"{self.n}/{self.total}" if self.total else f"{self.n}"

    def _print(self, text: str) -> None:
        with self._lock:
            print(f"{self.desc}: {text}{self.postfix}", file=self.stream)
            self.stream.flush()
            self.said = self.clock()

    def _ping(self) -> None:
        quiet = self.clock() - self.said
        if quiet >= self._quiet:
            self._print(
                f"{self._done()} {self.unit}, still working ({quiet:.0f} s since the last line)"
            )

    def set_postfix(self, **values: float) -> None:
        """Values shown after the next lines (`, loss 0.0123`), as tqdm's set_postfix."""
        self.postfix = "".join(f", {k} {v:.4g}" for k, v in values.items())

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        if now - self.last < self.interval:
            return
        self.last = now
        rate = (self.n - self.initial) / max(now - self.start, 1e-9)
        eta = ""
        if self.total and self.n < self.total and rate > 0:
            eta = f", ETA {hms((self.total - self.n) / rate)}"
        self._print(f"{self._done()} {self.unit} ({rate:.3g} {self.unit}/s{eta})")

    def close(self) -> None:
        if self._keepalive is not None:
            self._keepalive.stop()

    def __enter__(self) -> Lines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def hms(seconds: float) -> str:
    """H:MM:SS of `seconds` ('?' if not finite)."""
    if not math.isfinite(seconds):
        return "?"
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
