"""Train mode: resume from the newest checkpoint, run scanned steps, log, evaluate, checkpoint.

Dispatch i runs steps [s, s + k) (k = config.training.n_jitted_steps, shorter at the end) on the
global batches ds.batch(s), ..., ds.batch(s + k - 1); events (logging, eval loss, snapshots and
their sample grids, preemption checkpoints) fire at the end of a dispatch whose steps cross a
multiple of their frequency. Checkpoints therefore sit at dispatch boundaries, so a resumed run
dispatches exactly the same programs on exactly the same data as an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import signal

import jax
import numpy as np
from jax.sharding import Mesh

from score_sde import parallel, train
from score_sde.metrics_log import MetricsLogger
from score_sde.modes import common
from score_sde.modes.config import RunConfig


class _Preemption:
    """Turns SIGTERM into a flag the loop checks between dispatches (all processes agree)."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: no handler, no preemption saves
            self._previous = None
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def any_process(self) -> bool:
        if jax.process_count() == 1:
            return self.requested
        from jax.experimental import multihost_utils

        flags = multihost_utils.process_allgather(np.array(self.requested, np.int32))
        return bool(np.asarray(flags).any())


def _crossed(old: int, new: int, freq: int) -> bool:
    return new // freq > old // freq


def _stack(batches: list[dict]) -> dict:
    return {k: np.stack([b[k] for b in batches]) for k in batches[0]}


def train_and_evaluate(
    cfg: RunConfig, workdir: str, *, mesh: Mesh | None = None, dataset=None, stream=None
):
    """Trains to config.training.n_iters (resuming if checkpoints exist); returns the final state.

    `dataset` overrides the training data (anything with `.batch(step)` giving this process's rows
    of the global batch), for tests.
    """
    workdir = common.prepare_workdir(workdir)
    exp = common.build(cfg, mesh)
    t = cfg.training
    # data first: a missing dataset fails before anything is initialized or written
    train_ds = dataset or common.get_dataset(cfg, "train", global_batch=t.batch_size, seed=cfg.seed)
    eval_ds = common.get_dataset(cfg, "test", global_batch=t.batch_size, seed=cfg.seed + 1)
    main = common.is_main_process()
    log = MetricsLogger(workdir, enabled=main, total_steps=t.n_iters, stream=stream)
    log.info(f"topology: {parallel.topology().describe()}; mesh {dict(exp.mesh.shape)}")
    ckpts = common.open_checkpoints(workdir)
    try:
        state = ckpts.restore(exp.state_like())
    except ValueError:
        ckpts.close()
        log.close()
        raise
    if main:  # after the restore: a config that does not fit keeps the run's config.json
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(cfg.raw.to_json_best_effort(indent=2))
    if state is None:
        state = exp.new_state()
        log.info(
            f"new run in {workdir}; params: {sum(x.size for x in jax.tree.leaves(state.params)):,}"
        )
    else:
        log.info(f"resumed from step {int(state.step)} in {workdir}")
    step = int(state.step)

    train_steps = train.make_train_steps(
        exp.loss_fn(train=True), exp.tx, cfg.model.ema_rate, exp.mesh
    )
    eval_loss = train.make_eval_loss(exp.loss_fn(train=False), exp.mesh)

    try:
        with _Preemption() as preemption:
            while step < t.n_iters:
                n = min(t.n_jitted_steps, t.n_iters - step)
                local = _stack([train_ds.batch(step + i) for i in range(n)])
                batches = parallel.global_batch(local, exp.mesh, batch_axis=1)
                state, metrics = train_steps(state, batches)
                old, step = step, step + n
                losses = parallel.to_host(metrics["loss"])
                bad = ~np.isfinite(losses)
                if bad.any():
                    common.finite_or_raise(
                        float(losses[bad][0]), "the training loss", old + int(np.argmax(bad)) + 1
                    )
                last = step == t.n_iters
                if _crossed(old, step, t.log_freq) or last:
                    grad_norm = float(parallel.to_host(metrics["grad_norm"])[-1])
                    log.progress(
                        step,
                        {"loss": float(losses.mean()), "grad_norm": grad_norm},
                        batch_size=t.batch_size,
                    )
                if _crossed(old, step, t.eval_freq) or last:
                    batch = parallel.global_batch(eval_ds.batch(step), exp.mesh)
                    key = jax.random.fold_in(exp.key(common.KEY_EVAL_LOSS), step)
                    value = float(parallel.to_host(eval_loss(state.ema_params, key, batch)))
                    common.finite_or_raise(value, "the eval loss", step)
                    log.write(step, {"eval_loss": value})
                    log.info(f"step {step}: eval loss (EMA params) {value:.5g}")
                if _crossed(old, step, t.snapshot_freq) or last:
                    ckpts.save(step, state, snapshot=True)
                    if t.snapshot_sampling:
                        _snapshot_samples(exp, state, workdir, step)
                elif _crossed(old, step, t.snapshot_freq_for_preemption):
                    ckpts.save(step, state, snapshot=False)
                if not last and preemption.any_process():
                    ckpts.save(step, state, snapshot=False)
                    ckpts.wait()
                    log.info(
                        f"SIGTERM: saved a preemption checkpoint at step {step} in {workdir}; "
                        "rerun the same command to resume"
                    )
                    break
    finally:  # also on errors: finish pending saves, so the last good checkpoint is whole
        ckpts.wait()
        ckpts.close()
        log.close()
    return state


def _snapshot_samples(exp: common.Experiment, state, workdir: str, step: int) -> None:
    s = exp.cfg.sampling
    num = min(s.batch_size, 64) if len(exp.shape) == 3 else s.batch_size
    key = jax.random.fold_in(exp.key(common.KEY_SAMPLES), step)
    samples, _ = exp.draw_samples(state.ema_params, key, num, s.method, s.batch_size)
    if common.is_main_process():
        out = os.path.join(workdir, "samples", f"iter_{step}")
        os.makedirs(out, exist_ok=True)
        common.save_samples(os.path.join(out, "sample"), samples, exp.cfg)


def dump_json(path: str, obj) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
