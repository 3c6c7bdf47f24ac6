"""The training loop shared by score models (train mode) and classifiers (train_classifier mode).

    state, preempted = loop.run(state, train_steps, dataset, schedule, ckpts, log,
                                evaluate=..., on_snapshot=...)

Dispatch i runs steps [s, s + k) (k = n_jitted_steps, shorter at the end) on this process's
batches dataset.batch(s), ..., dataset.batch(s + k - 1). Events fire at the end of a dispatch whose
steps cross a multiple of their frequency: a progress line (log_freq), `evaluate` (eval_freq), a
snapshot and `on_snapshot` (snapshot_freq, and at the last step), the rolling preemption
checkpoint (snapshot_freq_for_preemption), `on_phema` (phema_freq, and at the last step: the
post-hoc EMA snapshots). On SIGTERM (any process) a preemption checkpoint is
saved and the loop returns. Checkpoints therefore sit at dispatch boundaries, so a resumed run
dispatches exactly the same programs on exactly the same data as an uninterrupted one.
A non-finite loss raises FloatingPointError; the checkpoints already written stay untouched.
"""

from __future__ import annotations

import dataclasses
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import numpy as np

from score_sde import parallel
from score_sde.config import ClassifierConfig, TrainingConfig

if TYPE_CHECKING:
    from score_sde.run.train import TrainState, TrainSteps
    from score_sde.store.checkpoint import Checkpoints
    from score_sde.store.metrics_log import MetricsLogger


class Batches(Protocol):
    """Training data by step: `batch(step)` -> this process's rows of global batch `step`,
    {"x": [b, *shape], "label"?: [b]}."""

    def batch(self, step: int) -> dict[str, np.ndarray]: ...


@dataclasses.dataclass(frozen=True)
class Schedule:
    """When things happen, in optimizer steps (None: never)."""

    n_iters: int
    n_jitted_steps: int
    batch_size: int  # global, for the examples/s of the progress line
    log_freq: int
    snapshot_freq: int
    snapshot_freq_for_preemption: int | None = None
    eval_freq: int | None = None
    unit: str = "img"  # what one example is called in the progress line ('pt' for 2-D toys)
    keep_checkpoints: int = 0  # snapshots kept (0: all; see Checkpoints.retain)
    phema_freq: int | None = None  # post-hoc EMA snapshots (config.training.phema_freq)

    @classmethod
    def of_training(cls, t: TrainingConfig, unit: str = "img") -> Schedule:
        return cls(
            t.n_iters,
            t.n_jitted_steps,
            t.batch_size,
            t.log_freq,
            t.snapshot_freq,
            t.snapshot_freq_for_preemption,
            t.eval_freq,
            unit,
            t.keep_checkpoints,
            (t.phema_freq or t.snapshot_freq) if t.phema_stds else None,
        )

    @classmethod
    def of_classifier(cls, c: ClassifierConfig) -> Schedule:
        return cls(c.n_iters, c.n_jitted_steps, c.batch_size, c.log_freq, c.snapshot_freq)


class Preemption:
    """Turns SIGTERM and SIGINT (Ctrl-C) into a flag the loop checks between dispatches; all
    processes agree on it (one all-gather per dispatch), so they stop after the same step."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> Preemption:
        for sig in self.SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: no handler, no preemption saves
                pass
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)

    def any_process(self) -> int | None:
        """The signal number if any process received one (the largest), else None."""
        return parallel.max_over_processes(self.signum or 0) or None


def _compiling_line(sch: Schedule) -> str:
    """What the first dispatch waits for, said before it starts."""
    import jax

    return (
        f"compiling the training step ({sch.n_jitted_steps} step(s) per dispatch, global batch "
        f"{sch.batch_size}, {jax.device_count()} {jax.default_backend()} device(s)): seconds for "
        "a toy, about a minute for the paper's networks on a GPU, several on a CPU"
    )


def _seconds(start: float) -> str:
    return f"{time.perf_counter() - start:.1f} s"


def _crossed(old: int, new: int, freq: int | None) -> bool:
    return freq is not None and new // freq > old // freq


def finite_or_raise(value: float, what: str, step: int, last_good: str | None = None) -> None:
    """Raises FloatingPointError naming `last_good` (a checkpoint path) when `value` is NaN/Inf."""
    if not np.isfinite(value):
        kept = (
            f"The last good checkpoint {last_good} is kept untouched"
            if last_good
            else "No checkpoint was written yet"
        )
        raise FloatingPointError(
            f"{what} is {value} at step {step}: training diverged. {kept}; lower "
            "config.optim.lr, set config.optim.grad_clip, or check the data."
        )


def run(
    state: TrainState,
    train_steps: TrainSteps,
    dataset: Batches,
    schedule: Schedule,
    ckpts: Checkpoints,
    log: MetricsLogger,
    *,
    evaluate: Callable[[TrainState, int], None] | None = None,
    on_snapshot: Callable[[TrainState, int], None] | None = None,
    on_phema: Callable[[TrainState, int], None] | None = None,
    what: str = "the training loss",
) -> tuple[TrainState, int | None]:
    """Trains from state.step to schedule.n_iters; returns (state, the signal number that
    stopped it early after a preemption checkpoint, or None).

    `train_steps(state, batches)` runs len(batches) steps (train.make_train_steps); `dataset`
    has `.batch(step)` -> this process's rows of global batch `step`; `ckpts` a
    checkpoint.Checkpoints; `log` a MetricsLogger; `evaluate(state, step)`,
    `on_snapshot(state, step)` and `on_phema(state, step)` are called at their events.
    """
    from score_sde.store import progress

    sch = schedule
    step = int(parallel.to_host(state.step))
    if step < sch.n_iters:
        log.info(_compiling_line(sch))
    started: float | None = time.perf_counter()
    bar = progress.bar(
        sch.n_iters, "training", "step", enabled=log.enabled, stream=log.stream, initial=step
    )
    with Preemption() as preemption, bar:
        while step < sch.n_iters:
            n = min(sch.n_jitted_steps, sch.n_iters - step)
            state, metrics = train_steps(state, [dataset.batch(step + i) for i in range(n)])
            old, step = step, step + n
            losses = parallel.to_host(metrics["loss"])
            if started is not None:
                log.info(f"compiled and ran the first {n} step(s) in {_seconds(started)}")
                started = None
            bar.set_postfix(loss=float(losses.mean()))
            bar.update(n)
            bad = ~np.isfinite(losses)
            if bad.any():
                at = old + int(np.argmax(bad)) + 1
                finite_or_raise(float(losses[bad][0]), what, at, ckpts.last_good())
            last = step == sch.n_iters
            if _crossed(old, step, sch.log_freq) or last:
                shown = {"training_loss": float(losses.mean())}
                if "grad_norm" in metrics:
                    shown["grad_norm"] = float(parallel.to_host(metrics["grad_norm"])[-1])
                log.progress(step, shown, batch_size=sch.batch_size, unit=sch.unit)
            if evaluate is not None and (_crossed(old, step, sch.eval_freq) or last):
                evaluate(state, step)
            # before the step's checkpoint: a run killed between the two replays the step
            if on_phema is not None and (_crossed(old, step, sch.phema_freq) or last):
                on_phema(state, step)
            saved = False  # at most one checkpoint per step: their barriers must not collide
            if _crossed(old, step, sch.snapshot_freq) or last:
                ckpts.save(step, state, snapshot=True)
                saved = True
                for path in ckpts.retain(sch.keep_checkpoints):
                    log.info(f"deleted {path} (config.training.keep_checkpoints = "
                             f"{sch.keep_checkpoints})")  # fmt: skip
                if on_snapshot is not None:
                    on_snapshot(state, step)
            elif _crossed(old, step, sch.snapshot_freq_for_preemption):
                ckpts.save(step, state, snapshot=False)
                saved = True
            signum = None if last else preemption.any_process()
            if signum is not None:
                if not saved:
                    ckpts.save(step, state, snapshot=False)
                ckpts.wait()
                name = signal.Signals(signum).name
                log.info(
                    f"{name}: saved a preemption checkpoint at step {step}; rerun the same "
                    "command to resume"
                )
                return state, signum
    return state, None
