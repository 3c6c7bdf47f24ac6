"""Progress of long loops: a tqdm bar on a terminal, plain periodic lines anywhere else (a log
file, a pipe), so that logs hold no carriage-return clutter.

    with progress.bar(total=50_000, desc="Inception features", unit="img") as bar:
        bar.update(250)
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

if TYPE_CHECKING:
    from tqdm import tqdm

T = TypeVar("T")


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
    from tqdm import tqdm

    stream = sys.stderr if stream is None else stream
    if not enabled:
        return tqdm(total=total, disable=True)
    if getattr(stream, "isatty", lambda: False)():
        return tqdm(total=total, desc=desc, unit=unit, leave=False, file=stream)
    return Lines(total, desc, unit, stream, **kw)


def wrap(items: Iterable[T], desc: str, unit: str, **kw: Any) -> Iterator[T]:
    """Yields `items`, showing their progress as `bar` does."""
    items = list(items)
    with bar(len(items), desc, unit, **kw) as b:
        for item in items:
            yield item
            b.update(1)


class Lines:
    """Plain progress lines: after the first update (the rate and ETA a log reader wants early),
    then one per `interval` seconds at most: `desc: n/total unit (rate unit/s, ETA 1:02:03)`."""

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str,
        stream: TextIO,
        interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.total, self.desc, self.unit, self.stream = total, desc, unit, stream
        self.interval, self.clock = interval, clock
        self.n = 0
        self.start, self.last = clock(), -math.inf

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        if now - self.last < self.interval:
            return
        self.last = now
        rate = self.n / max(now - self.start, 1e-9)
        done = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        eta = ""
        if self.total and self.n < self.total and rate > 0:
            eta = f", ETA {hms((self.total - self.n) / rate)}"
        print(f"{self.desc}: {done} {self.unit} ({rate:.3g} {self.unit}/s{eta})", file=self.stream)
        self.stream.flush()

    def close(self) -> None:
        pass

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
