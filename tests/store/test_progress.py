"""Progress: a tqdm bar only on a terminal, plain lines (no carriage returns) in logs."""

import io
import time

from score_sde.store import progress
from tests.helpers import PROGRESS_LINE, RATE_LINE


class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_a_log_gets_plain_lines_first_then_one_per_interval():
    stream, clock = io.StringIO(), _Clock()
    with progress.bar(100, "sampling pc", "pt", stream=stream, interval=30.0, clock=clock) as b:
        for _ in range(10):
            clock.t += 5.0
            b.update(10)
    lines = stream.getvalue().splitlines()
    # a line at once, the first update, then at 35 s (30 s after it); 10 pt per 5 s
    assert lines == [
        "sampling pc: 0/100 pt, starting",
        "sampling pc: 10/100 pt (2 pt/s, ETA 0:00:45)",
        "sampling pc: 70/100 pt (2 pt/s, ETA 0:00:15)",
    ]
    assert "\r" not in stream.getvalue()
    assert all(PROGRESS_LINE.match(line) for line in lines)
    assert not PROGRESS_LINE.match(
        "warning: skipped checkpoint /w/checkpoints/24: unreadable array data"
    )
    assert PROGRESS_LINE.match("training: 3/10 step, still working (21 s since the last line)")
    assert PROGRESS_LINE.match("training: 4/10 step (0.5 step/s, ETA 0:00:12), loss 0.0123")
    assert not RATE_LINE.match("sampling pc: 0/100 pt, starting")


def test_a_terminal_gets_a_tqdm_bar_and_other_processes_nothing(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    monkeypatch.setattr(progress, "KEEPALIVE", 0.1)
    with progress.bar(10, "features", "img", stream=term) as b:
        time.sleep(0.35)  # a long first update: the bar is redrawn meanwhile
        drawn = term.getvalue().count("\r")
        b.update(10)
    assert drawn >= 3 and "features" in term.getvalue()
    assert not b._keepalive._thread.is_alive() or b._keepalive._stopped.is_set()
    after = term.getvalue()
    time.sleep(0.3)
    assert term.getvalue() == after  # closed: no more redraws
    quiet = io.StringIO()
    with progress.bar(10, "features", "img", stream=quiet, enabled=False) as b:
        b.update(10)
    assert quiet.getvalue() == ""


def test_wrap_yields_every_item():
    stream = io.StringIO()
    assert list(progress.wrap(range(5), "reading", "img", stream=stream)) == list(range(5))
    assert stream.getvalue().startswith("reading: 0/5 img, starting\nreading: 1/5 img")
