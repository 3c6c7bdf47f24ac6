"""Train-classifier mode: a noise-conditional classifier p_t(y | x_t) for classifier guidance.

    python launch.py --config configs/digits/conditional.py --workdir runs/digits_cond \
        --mode train_classifier

Trains `score_sde.models.classifier` on the config's labelled training data with the cross-entropy
at x_t ~ p_0t(x_t | x_0), t ~ U(eps, T) under the config's SDE (`guidance.get_classifier_loss_fn`),
with the same scanned, data-parallel steps, EMA and checkpoints as the score model. Everything
lives in `<workdir>/classifier/` (checkpoints, metrics), next to the score model it will guide.
Settings: config.classifier (network: nf, ch_mult, num_res_blocks, dropout, nonlinearity,
num_classes; training: n_iters, batch_size, lr, warmup, grad_clip, ema_rate, log_freq,
snapshot_freq, n_jitted_steps, eps); see configs/conditional.py for the defaults.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from score_sde import guidance, parallel, train
from score_sde.metrics_log import MetricsLogger
from score_sde.models import classifier as classifier_lib
from score_sde.models.layers import KeyGen
from score_sde.modes import common
from score_sde.modes.config import RunConfig
from score_sde.sde import SDE, batch_mul, get_sde

CLASSIFIER_DIR = "classifier"


@dataclasses.dataclass(frozen=True)
class ClassifierTraining:
    """config.classifier's training fields (the network's are in models.classifier)."""

    n_iters: int = 2000
    batch_size: int = 128
    lr: float = 1e-3
    warmup: int = 100
    grad_clip: float = 1.0
    ema_rate: float = 0.999
    log_freq: int = 100
    snapshot_freq: int = 1000
    n_jitted_steps: int = 50
    eps: float = 1e-5

    @classmethod
    def from_config(cls, config) -> ClassifierTraining:
        if "classifier" not in config:
            raise ValueError(
                "config.classifier is missing; use a config with a classifier section, e.g. "
                "configs/digits/conditional.py, or add one with configs/conditional.py's "
                "add_conditional_sections(config)"
            )
        section = config.classifier
        own = {f.name for f in dataclasses.fields(cls)}
        known = own | {f.name for f in dataclasses.fields(classifier_lib.ClassifierConfig)}
        for key in section.keys():
            if key not in known:
                raise ValueError(
                    f"config.classifier.{key} is not a known field (known: "
                    f"{', '.join(sorted(known))}); remove or rename it"
                )
        out = cls(**{k: section[k] for k in own if k in section})
        for name in ("n_iters", "batch_size", "log_freq", "snapshot_freq", "n_jitted_steps"):
            if getattr(out, name) <= 0:
                raise ValueError(
                    f"config.classifier.{name} ({getattr(out, name)}) must be a positive integer"
                )
        return out


def build_classifier(cfg: RunConfig):
    """(classifier_apply, init_params(key) -> params) for config.classifier on the config's data."""
    from score_sde import models

    shape = tuple(models.data_shape(cfg.raw))
    if len(shape) != 3:
        raise ValueError(
            f"the noise-conditional classifier takes images [H, W, C]; the data shape is {shape}"
        )
    from flax import nnx

    c = classifier_lib.ClassifierConfig.from_config(cfg.raw)
    key0 = jax.random.key(0)
    module = nnx.eval_shape(lambda: classifier_lib.Classifier(c, shape[-1], rngs=KeyGen(key0)))
    apply_fn = classifier_lib.make_classifier_apply(nnx.split(module)[0])
    init_params = lambda key: classifier_lib.init_classifier(cfg.raw, key, shape[-1])[1]
    return apply_fn, init_params


def _optimizer(t: ClassifierTraining):
    return train.make_optimizer(train.OptimConfig(lr=t.lr, warmup=t.warmup, grad_clip=t.grad_clip))


def _state_like(init_params, tx, mesh):
    abstract = jax.eval_shape(lambda k: train.init_state(init_params(k), tx, k), jax.random.key(0))
    rep = parallel.replicated(mesh)
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep), abstract)


def load_classifier(cfg: RunConfig, workdir: str, mesh: Mesh):
    """(classifier_apply, EMA params) of the newest classifier checkpoint under `workdir`
    (the classifier's own directory, e.g. <score workdir>/classifier)."""
    t = ClassifierTraining.from_config(cfg.raw)
    apply_fn, init_params = build_classifier(cfg)
    ckpts = common.open_checkpoints(workdir, read_only=True)
    try:
        if ckpts.latest_step() is None:
            raise ValueError(
                f"no classifier checkpoint in {workdir}; train one first with "
                "--mode=train_classifier (same --workdir as the score model)"
            )
        state = ckpts.restore(_state_like(init_params, _optimizer(t), mesh))
    finally:
        ckpts.close()
    return apply_fn, state.ema_params


def train_classifier(
    cfg: RunConfig, workdir: str, *, mesh: Mesh | None = None, dataset=None, stream=None
):
    """Trains the classifier to config.classifier.n_iters (resuming); returns the final state.

    `dataset` overrides the training data (anything with `.batch(step)` -> {"x", "label"}).
    """
    workdir = os.path.join(common.prepare_workdir(workdir), CLASSIFIER_DIR)
    os.makedirs(workdir, exist_ok=True)
    mesh = mesh or parallel.make_mesh()
    sde = make_sde(cfg)
    t = ClassifierTraining.from_config(cfg.raw)
    parallel.check_batch_size(t.batch_size, mesh, field="config.classifier.batch_size")
    apply_fn, init_params = build_classifier(cfg)
    tx = _optimizer(t)
    main = common.is_main_process()
    log = MetricsLogger(workdir, enabled=main, total_steps=t.n_iters, stream=stream)

    ckpts = common.open_checkpoints(workdir)
    state = ckpts.restore(_state_like(init_params, tx, mesh))
    if state is None:
        key = jax.random.fold_in(jax.random.key(cfg.seed), common.KEY_INIT)
        state = train.make_init_state(init_params, tx, mesh)(key)
        n_params = sum(x.size for x in jax.tree.leaves(state.params))
        log.info(f"new classifier in {workdir}; params: {n_params:,}")
    else:
        log.info(f"resumed the classifier from step {int(state.step)} in {workdir}")
    step = int(state.step)

    train_ds = dataset or common.get_dataset(cfg, "train", global_batch=t.batch_size, seed=cfg.seed)
    loss_fn = guidance.get_classifier_loss_fn(sde, apply_fn, train=True, eps=t.eps)
    train_steps = train.make_train_steps(loss_fn, tx, t.ema_rate, mesh)
    try:
        while step < t.n_iters:
            n = min(t.n_jitted_steps, t.n_iters - step)
            local = [train_ds.batch(step + i) for i in range(n)]
            if "label" not in local[0]:
                raise ValueError(
                    f"dataset {cfg.dataset!r} has no labels; the classifier needs a labelled "
                    "dataset (e.g. digits, or an npz with y_train)"
                )
            batches = parallel.global_batch(
                {k: np.stack([b[k] for b in local]) for k in ("x", "label")}, mesh, 1
            )
            state, metrics = train_steps(state, batches)
            old, step = step, step + n
            losses = parallel.to_host(metrics["loss"])
            if not np.all(np.isfinite(losses)):
                common.finite_or_raise(float(losses[~np.isfinite(losses)][0]), "the loss", step)
            last = step == t.n_iters
            if step // t.log_freq > old // t.log_freq or last:
                log.progress(step, {"loss": float(losses.mean())}, batch_size=t.batch_size)
            if step // t.snapshot_freq > old // t.snapshot_freq or last:
                ckpts.save(step, state, snapshot=True)
        accuracy = evaluate_classifier(cfg, sde, mesh, apply_fn, state.ema_params)
        log.write(step, {f"test_accuracy_t{k}": v for k, v in accuracy.items()})
        log.info(
            "classifier test accuracy (EMA) at t = "
            + ", ".join(f"{k}: {v:.3f}" for k, v in accuracy.items())
        )
    finally:
        ckpts.wait()
        ckpts.close()
        log.close()
    return state


def evaluate_classifier(cfg, sde, mesh, apply_fn, params, times=(0.0, 0.25, 0.5, 0.75)) -> dict:
    """Test-split accuracy of the classifier on x_t at a few times t (fixed noise draws)."""
    ds = common.get_dataset(cfg, "test", global_batch=mesh.devices.size, seed=cfg.seed)
    x, y = [], []
    for b in ds.epoch(256):
        x.append(b["x"][b["mask"]])
        y.append(b["label"][b["mask"]])
    x, y = jnp.asarray(np.concatenate(x)), jnp.asarray(np.concatenate(y))
    key = jax.random.fold_in(jax.random.key(cfg.seed), common.KEY_EVAL_LOSS)
    accuracy = jax.jit(guidance.classifier_accuracy, static_argnums=0)
    out = {}
    for i, t in enumerate(times):
        tt = jnp.full((len(x),), max(t, 1e-5))
        mean, std = sde.marginal_prob(x, tt)
        xt = mean + batch_mul(std, jax.random.normal(jax.random.fold_in(key, i), x.shape))
        out[t] = float(accuracy(apply_fn, params, xt, y, tt))
    return out


def make_sde(cfg: RunConfig) -> SDE:
    """The config's SDE (as common.build makes it), without building the score network."""
    m = cfg.model
    if cfg.training.sde.lower() == "vesde":
        return get_sde("vesde", sigma_min=m.sigma_min, sigma_max=m.sigma_max, N=m.num_scales)
    return get_sde(cfg.training.sde, beta_min=m.beta_min, beta_max=m.beta_max, N=m.num_scales)
