"""Progress: a tqdm bar only on a terminal, plain lines (no carriage returns) in logs."""

import io
import re

from score_sde.store import progress

# A plain progress line, as other tests tell it apart from warnings and errors on stderr.
LINE = re.compile(r"^[^\n]+: \d+(/\d+)? \S+ \([0-9.e+-]+ \S+/s(, ETA [0-9:?]+)?\)$")


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
    # the first update, then at 35 s (30 s after it); the rate is 10 pt per 5 s
    assert lines == [
        "sampling pc: 10/100 pt (2 pt/s, ETA 0:00:45)",
        "sampling pc: 70/100 pt (2 pt/s, ETA 0:00:15)",
    ]
    assert "\r" not in stream.getvalue()
    assert all(LINE.match(line) for line in lines)
    assert not LINE.match("warning: skipped checkpoint /w/checkpoints/24: unreadable array data")


def test_a_terminal_gets_a_tqdm_bar_and_other_processes_nothing():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    with progress.bar(10, "features", "img", stream=term) as b:
        b.update(10)
    assert "\r" in term.getvalue() and "features" in term.getvalue()
    quiet = io.StringIO()
    with progress.bar(10, "features", "img", stream=quiet, enabled=False) as b:
        b.update(10)
    assert quiet.getvalue() == ""


def test_wrap_yields_every_item():
    stream = io.StringIO()
    assert list(progress.wrap(range(5), "reading", "img", stream=stream)) == list(range(5))
    assert stream.getvalue().startswith("reading: 1/5 img")
