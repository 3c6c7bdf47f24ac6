"""Train mode: resume from the newest checkpoint, run the training loop (score_sde.run.loop), log the
eval loss of the EMA parameters, draw EMA sample grids at snapshots and store the post-hoc EMA
snapshots (config.training.phema_stds; store.phema_files)."""

from __future__ import annotations

import os
from typing import TextIO

import jax
from jax.sharding import Mesh

from score_sde import parallel, phema
from score_sde.config import Config
from score_sde.data import datasets
from score_sde.run import experiment, identity, loop, sample_files, train
from score_sde.run.opening import open_run
from score_sde.store import phema_files, wandb_log
from score_sde.store import workdir as wd


def train_and_evaluate(
    cfg: Config,
    workdir: str,
    *,
    mesh: Mesh | None = None,
    dataset: loop.Batches | None = None,
    stream: TextIO | None = None,
) -> tuple[train.TrainState, int | None]:
    """Trains to config.training.n_iters (resuming if checkpoints exist); returns (the final
    state, the signal number if a SIGTERM or SIGINT stopped the run early, else None).

    `dataset` overrides the training data (anything with `.batch(step)` giving this process's rows
    of the global batch), for tests.
    """
    wandb_log.require(cfg.logging.wandb)  # a missing package fails before anything is built
    exp = experiment.build(cfg, mesh)
    t = cfg.training
    # data first: a missing dataset fails before anything is initialized or written
    train_ds = dataset or datasets.get_process_dataset(
        cfg.data,
        "train",
        global_batch=t.batch_size,
        seed=cfg.seed,
        num_classes=cfg.model.num_classes,
    )
    eval_ds = datasets.get_process_dataset(
        cfg.data,
        "test",
        global_batch=t.batch_size,
        seed=cfg.seed + 1,
        num_classes=cfg.model.num_classes,
    )
    with open_run(workdir, total_steps=t.n_iters, stream=stream) as run:  # one run per workdir
        ckpts, log = run.ckpts, run.log
        for line in dict.fromkeys(getattr(train_ds, "notes", ()) + eval_ds.notes):
            log.info(f"data: {line}")
        state = ckpts.restore(exp.state_like())
        restored = ckpts.last_restored_path if state is not None else None
        stored = ckpts.last_restored_identity if restored is not None else None
        ident = identity.of(cfg, identity.run_id(run.workdir, run.main, adopt=_run_of(stored)))
        if restored is not None:  # another run's checkpoint or other model/SDE/data: refused
            allowed = identity.check_resume(
                stored, ident, restored, allow=t.allow_foreign_checkpoint
            )
            for line in allowed:
                log.info(line)
        ckpts.identity = ident  # recorded in every checkpoint from here on
        if run.main:  # after the checks: a config that does not fit keeps the run's config.json
            identity.record(run.workdir, ident["run_id"])
            config_json = os.path.join(run.workdir, "config.json")
            if restored is not None:  # config.json is only reported on, never read back
                now = cfg.to_dict()
                for line in identity.config_json_lines(config_json, now, stored, restored):
                    log.info(line)
            wd.write_json(config_json, cfg.to_dict())
        w = cfg.logging
        log.start_wandb(
            project=w.wandb,
            name=w.wandb_name,
            mode=w.wandb_mode,
            entity=w.wandb_entity,
            run_id=ident["run_id"],  # a resumed run continues the same W&B run
            config=cfg.to_dict(),
        )
        if state is None:
            state = exp.new_state()
            n = sum(x.size for x in jax.tree.leaves(state.params))
            log.info(f"new run in {run.workdir}; params: {n:,}")
        else:
            log.info(f"resumed from step {int(parallel.to_host(state.step))} in {run.workdir}")

        eval_loss = train.make_eval_loss(exp.loss_fn(train=False), exp.mesh)

        def evaluate(state, step):
            batch = parallel.global_batch(eval_ds.batch(step), exp.mesh)
            key = jax.random.fold_in(exp.key(experiment.KEY_EVAL_LOSS), step)
            value = float(parallel.to_host(eval_loss(state.ema_params, key, batch)))
            loop.finite_or_raise(value, "the eval loss", step, ckpts.last_good())
            log.write(step, {"eval_loss": value})
            log.info(f"step {step}: eval loss (EMA params) {value:.5g}")

        def snapshot_samples(state, step):
            if not t.snapshot_sampling:
                return
            s = cfg.sampling
            num = min(s.batch_size, 64) if len(exp.shape) == 3 else s.batch_size
            key = jax.random.fold_in(exp.key(experiment.KEY_SAMPLES), step)
            x, _ = exp.sample(state.ema_params, key, num)
            stem = os.path.join(run.workdir, "samples", f"iter_{step}", "sample")
            saved = sample_files.on_host(x, cfg.data)
            picture = sample_files.write(run, stem, saved, f"step {step}: {len(x)} EMA samples")
            if picture is not None:
                log.image(step, "samples", picture)

        def phema_snapshots(state, step):
            emas = parallel.to_host(phema.emas(state.opt_state))  # every process: may gather
            if run.main:
                for std, ema in zip(t.phema_stds, emas, strict=True):
                    phema_files.write(run.workdir, step, std, ema)

        state, signum = loop.run(
            state,
            exp.train_steps(),
            train_ds,
            loop.Schedule.of_training(t, exp.unit),
            ckpts,
            log,
            evaluate=evaluate,
            on_snapshot=snapshot_samples,
            on_phema=phema_snapshots if t.phema_stds else None,
        )
    return state, signum


def _run_of(stored: dict | None) -> str | None:
    return None if stored is None else stored.get("run_id")
