"""Train-classifier mode: a noise-conditional classifier p_t(y | x_t) for classifier guidance.

    python launch.py --config configs/digits/conditional.py --workdir runs/digits_cond \
        --mode train_classifier

Trains `score_sde.models.classifier` on the config's labelled training data with the cross-entropy
at x_t ~ p_0t(x_t | x_0), t ~ U(eps, T) under the config's SDE (`guidance.get_classifier_loss_fn`),
with the same training loop, EMA and checkpoints as the score model (score_sde.run.loop). Everything
lives in `<workdir>/classifier/` (checkpoints, metrics), next to the score model it will guide.
Settings: config.classifier (score_sde.config.ClassifierConfig).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TextIO

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from score_sde import guidance, parallel
from score_sde.config import Config
from score_sde.data import datasets
from score_sde.run import experiment, loop, train
from score_sde.run.experiment import CLASSIFIER_DIR
from score_sde.run.opening import open_run
from score_sde.score_fn import ApplyFn
from score_sde.sde import SDE, batch_mul


def _classes(cfg: Config) -> dict:
    """The data check of the classifier's labels: integers in [0, config.classifier.num_classes)."""
    return {
        "num_classes": cfg.classifier.num_classes,
        "classes_field": "config.classifier.num_classes",
    }


class _Labelled:
    """The training data, checked to carry labels."""

    def __init__(self, dataset: loop.Batches, name: str):
        self.dataset, self.name = dataset, name

    def batch(self, step: int) -> dict:
        b = self.dataset.batch(step)
        if "label" not in b:
            raise ValueError(
                f"dataset {self.name!r} has no labels; the classifier needs a labelled dataset "
                "(e.g. digits, or an npz with y_train)"
            )
        return {"x": b["x"], "label": b["label"]}


def train_classifier(
    cfg: Config,
    workdir: str,
    *,
    mesh: Mesh | None = None,
    dataset: loop.Batches | None = None,
    stream: TextIO | None = None,
) -> tuple[train.TrainState, int | None]:
    """Trains the classifier to config.classifier.n_iters (resuming); returns (the final state,
    the signal number if a SIGTERM or SIGINT stopped it early, else None).

    `dataset` overrides the training data (anything with `.batch(step)` -> {"x", "label"}).
    """
    mesh = mesh or parallel.make_mesh()
    c = cfg.classifier
    parallel.check_batch_size(c.batch_size, mesh, field="config.classifier.batch_size")
    sde = experiment.make_sde(cfg)
    apply_fn, init_params, tx = experiment.classifier(cfg)
    train_ds = _Labelled(
        dataset
        or datasets.get_process_dataset(
            cfg.data, "train", global_batch=c.batch_size, seed=cfg.seed, **_classes(cfg)
        ),
        cfg.data.dataset,
    )
    # one classifier run per work directory, in <workdir>/classifier
    opened = open_run(workdir, subdir=CLASSIFIER_DIR, total_steps=c.n_iters, stream=stream)
    with opened as run:
        ckpts, log, workdir = run.ckpts, run.log, run.workdir
        state = ckpts.restore(train.state_like(init_params, tx, mesh))
        if state is None:
            key = jax.random.fold_in(jax.random.key(cfg.seed), experiment.KEY_INIT)
            state = train.make_init_state(init_params, tx, mesh)(key)
            n = sum(x.size for x in jax.tree.leaves(state.params))
            log.info(f"new classifier in {workdir}; params: {n:,}")
        else:
            log.info(f"resumed the classifier from step {int(state.step)} in {workdir}")
        loss_fn = guidance.get_classifier_loss_fn(sde, apply_fn, train=True, eps=c.eps)
        state, signum = loop.run(
            state,
            train.make_train_steps(loss_fn, tx, c.ema_rate, mesh),
            train_ds,
            loop.Schedule.of_classifier(c),
            ckpts,
            log,
            what="the classifier loss",
        )
        if signum is None:
            accuracy = evaluate_classifier(cfg, sde, mesh, apply_fn, state.ema_params)
            log.write(int(state.step), {f"test_accuracy_t{k}": v for k, v in accuracy.items()})
            log.info(
                "classifier test accuracy (EMA) at t = "
                + ", ".join(f"{k}: {v:.3f}" for k, v in accuracy.items())
            )
    return state, signum


def evaluate_classifier(
    cfg: Config,
    sde: SDE,
    mesh: Mesh,
    apply_fn: ApplyFn,
    params: Any,
    times: Sequence[float] = (0.0, 0.25, 0.5, 0.75),
) -> dict[float, float]:
    """Test-split accuracy of the classifier on x_t at a few times t (fixed noise draws)."""
    ds = datasets.get_process_dataset(
        cfg.data, "test", global_batch=mesh.devices.size, seed=cfg.seed, **_classes(cfg)
    )
    xs, ys = [], []
    for b in ds.epoch(256):
        xs.append(b["x"][b["mask"]])
        ys.append(b["label"][b["mask"]])
    x, y = jnp.asarray(np.concatenate(xs)), jnp.asarray(np.concatenate(ys))
    key = jax.random.fold_in(jax.random.key(cfg.seed), experiment.KEY_EVAL_LOSS)
    accuracy = jax.jit(guidance.classifier_accuracy, static_argnums=0)
    out = {}
    for i, t in enumerate(times):
        tt = jnp.full((len(x),), max(t, 1e-5))
        mean, std = sde.marginal_prob(x, tt)
        xt = mean + batch_mul(std, jax.random.normal(jax.random.fold_in(key, i), x.shape))
        out[t] = float(accuracy(apply_fn, params, xt, y, tt))
    return out
