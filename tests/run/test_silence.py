"""No silent minutes: a first line at once, then a line at least every KEEPALIVE seconds while a
loop waits on a long step (a compilation, an ODE solve), in training, rounds and sampling."""

import io
import re
import threading
import time

import numpy as np

from score_sde.store import progress


class TimedStream(io.StringIO):
    """A log stream that records when each line was written (time.monotonic)."""

    def __init__(self):
        super().__init__()
        self.times: list[float] = []
        self._lock = threading.Lock()

    def write(self, text):
        with self._lock:
            self.times += [time.monotonic()] * text.count("\n")
            return super().write(text)


def _longest_silence(stream: TimedStream, start: float, end: float) -> float:
    marks = [start, *stream.times, end]
    return max(b - a for a, b in zip(marks, marks[1:], strict=False))


def test_a_bar_says_it_is_starting_and_still_working_during_a_long_update(monkeypatch):
    monkeypatch.setattr(progress, "KEEPALIVE", 0.2)
    stream = TimedStream()
    start = time.monotonic()
    with progress.bar(2, "log-likelihood", "img", stream=stream) as bar:
        time.sleep(1.0)  # the first round: compilation and a long solve
        bar.update(1)
        time.sleep(0.5)
        bar.update(1)
    end = time.monotonic()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "log-likelihood: 0/2 img, starting"
    still = [ln for ln in lines if "still working" in ln]
    assert len(still) >= 3, lines
    assert re.fullmatch(
        r"log-likelihood: 0/2 img, still working \(\d+ s since the last line\)", still[0]
    )
    assert any(ln.startswith("log-likelihood: 1/2 img (") for ln in lines), lines
    # at most KEEPALIVE * 1.5 between lines (the keep-alive looks every KEEPALIVE / 2), with slack
    assert _longest_silence(stream, start, end) < 0.2 * 1.5 + 0.15
    # the thread stops with the bar: nothing more is written after close
    count = len(stream.getvalue().splitlines())
    time.sleep(0.5)
    assert len(stream.getvalue().splitlines()) == count


def test_no_keepalive_line_while_updates_come_often(monkeypatch):
    monkeypatch.setattr(progress, "KEEPALIVE", 0.3)
    stream = TimedStream()
    with progress.bar(20, "sampling", "img", stream=stream, interval=30.0) as bar:
        for _ in range(20):
            time.sleep(0.02)
            bar.update(1)
    assert "still working" not in stream.getvalue()


def test_training_says_what_compiles_then_never_stays_silent(monkeypatch, tmp_path):
    """A slowed training step (0.35 s per dispatch, KEEPALIVE 0.2 s): the compile line comes
    first, then a line at least every 0.3 s, and the step lines carry the loss."""
    from score_sde.run import loop
    from score_sde.store.metrics_log import MetricsLogger

    monkeypatch.setattr(progress, "KEEPALIVE", 0.2)

    class State:
        step = np.int32(0)

    def train_steps(state, batches):
        time.sleep(0.35)
        new = State()
        new.step = np.int32(int(state.step) + len(batches))
        return new, {"loss": np.full(len(batches), 0.5, np.float32)}

    class Data:
        def batch(self, step):
            return {"x": np.zeros((2, 2), np.float32)}

    class Ckpts:
        def last_good(self):
            return None

        def save(self, *a, **k):
            pass

        def retain(self, keep):
            return []

        def wait(self):
            pass

    schedule = loop.Schedule(
        n_iters=4,
        n_jitted_steps=1,
        batch_size=2,
        log_freq=100,
        eval_freq=None,
        snapshot_freq=100,
        snapshot_freq_for_preemption=None,
        keep_checkpoints=0,
    )
    stream = TimedStream()
    start = time.monotonic()
    with MetricsLogger(str(tmp_path), stream=stream, total_steps=4) as log:
        state, signum = loop.run(State(), train_steps, Data(), schedule, Ckpts(), log)
    end = time.monotonic()
    assert int(state.step) == 4 and signum is None
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith(
        "compiling the training step (1 step(s) per dispatch, global batch 2"
    )
    assert lines[1] == "training: 0/4 step, starting"
    assert any(ln.startswith("compiled and ran the first 1 step(s) in ") for ln in lines), lines
    assert any(ln.startswith("training: 1/4 step (") and ln.endswith(", loss 0.5") for ln in lines)
    assert any("still working" in ln for ln in lines), lines
    assert stream.times[0] - start < 0.1  # the first line at once
    assert _longest_silence(stream, start, end) < 0.2 * 1.5 + 0.15
