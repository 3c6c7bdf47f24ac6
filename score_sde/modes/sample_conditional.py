"""Sample mode with a condition (config.condition, see configs/conditional.py):

- task 'class': class-conditional samples, labels config.condition.label or 0..K-1 in turn, with
  classifier-free guidance ('cfg': (1 + w) s(x, y) - w s(x); w = 0 is the plain conditional
  model) or classifier guidance ('classifier': s(x) + w grad log p_t(y | x); w = 1 is Bayes' rule);
  w = config.condition.scale.
- task 'inpaint': the known pixels (mask = 1) of the condition images are kept, the rest sampled
  (score_sde.controllable, PC or ODE per config.sampling.method); a label adds guidance.
- task 'colorize': RGB samples whose gray channel is the condition image's.

Every batch is one jitted sampler call over the whole mesh (batch sharded along 'data').
Writes `<workdir>/samples/ckpt_<step>_<task>_<method>.npz` (samples, originals, inputs, mask:
uint8 images; labels; samples_model: float model-space samples)
and a PNG grid: one row per input (input with the unknown region grayed, mask, samples, original)
or, for classes, one column per label.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from score_sde import controllable, guidance, image_io, parallel, sampling
from score_sde.metrics_log import MetricsLogger
from score_sde.modes import common, conditioning
from score_sde.modes.config import RunConfig


def _num_classes(cfg: RunConfig) -> int:
    model = cfg.raw.model
    return int(model.num_classes) if "num_classes" in model else 0


def _condition_inputs(cfg, exp, cond, num):
    """(originals [n, *shape] in [0, 1] or None, mask [n, *shape] or None) for `num` samples."""
    if cond.task not in ("inpaint", "colorize"):
        return None, None
    shape = exp.shape
    if len(shape) != 3:
        raise ValueError(f"config.condition.task={cond.task!r} needs image data, shape is {shape}")
    n_inputs = -(-num // cond.repeats)
    if cond.image:
        images = conditioning.read_images(cond.image)
    else:
        ds = common.get_dataset(cfg, "test", global_batch=exp.mesh.devices.size, seed=cfg.seed)
        batch = next(iter(ds.epoch(n_inputs)))
        images = np.asarray(common.to_images(batch["x"][batch["mask"]], cfg))
    originals = conditioning.fit(images, n_inputs, shape, "condition")
    originals = np.repeat(originals, cond.repeats, axis=0)[:num]
    if cond.task == "colorize":
        return originals, None
    if cond.mask in conditioning.NAMED_MASKS:
        mask = conditioning.named_mask(cond.mask, shape, cfg.seed)[None]
    else:
        mask = conditioning.read_images(cond.mask)
    mask = conditioning.fit((mask > 0.5).astype(np.float32), n_inputs, shape, "mask")
    return originals, np.repeat(mask, cond.repeats, axis=0)[:num]


def _labels(cfg, cond, num):
    if not cond.guided:
        return None
    k = _num_classes(cfg) if cond.guidance == "cfg" else _classifier_classes(cfg)
    if cond.label >= k:
        raise ValueError(f"config.condition.label ({cond.label}) must be < the {k} classes")
    return np.full(num, cond.label, np.int32) if cond.label >= 0 else np.arange(num) % k


def _classifier_classes(cfg):
    from score_sde.models.classifier import ClassifierConfig

    return ClassifierConfig.from_config(cfg.raw).num_classes


def _make_sampler(exp, cond, method, b):
    """sampler(key, score_fn, y, mask) for a global batch of b, sharded over the mesh."""
    s = exp.cfg.sampling
    shape = (b, *exp.shape)
    sharding = parallel.batch_sharding(exp.mesh)
    pc = dict(
        snr=s.snr,
        n_steps=s.n_steps_each,
        probability_flow=s.probability_flow,
        denoise=s.noise_removal,
        sharding=sharding,
    )
    pc_args = (exp.sde, shape, s.predictor, s.corrector)
    match cond.task, method:
        case (("none" | "class"), _):
            base = sampling.get_sampler(
                exp.sde,
                shape,
                method=method,
                predictor=s.predictor,
                corrector=s.corrector,
                snr=s.snr,
                n_steps=s.n_steps_each,
                probability_flow=s.probability_flow,
                denoise=s.noise_removal,
                sharding=sharding,
            )
            return lambda key, score_fn, y, mask: base(key, score_fn)
        case "inpaint", "pc":
            return controllable.get_pc_inpainter(*pc_args, **pc)
        case "inpaint", "ode":
            return controllable.get_ode_inpainter(exp.sde, shape, sharding=sharding)
        case "colorize", "pc":
            colorize = controllable.get_pc_colorizer(*pc_args, **pc)
            return lambda key, score_fn, y, mask: colorize(key, score_fn, y)
        case "colorize", "ode":
            colorize = controllable.get_ode_colorizer(exp.sde, shape, sharding=sharding)
            return lambda key, score_fn, y, mask: colorize(key, score_fn, y)
    raise ValueError(f"config.sampling.method ({method!r}) must be 'pc' or 'ode'")


def _score_builder(exp, cond, classifier):
    """(params, classifier params, labels) -> score_fn(x, t), with the configured guidance."""
    score_apply = exp.score_apply
    null = _num_classes(exp.cfg)

    def make(params, cparams, labels):
        plain = lambda x, t: score_apply(params, x, t)
        if labels is None:
            return plain
        if cond.guidance == "cfg":
            return guidance.network_cfg_score_fn(score_apply, params, labels, null, cond.scale)
        log_prob = guidance.classifier_log_prob_fn(classifier, cparams, labels)
        return guidance.classifier_guided_score_fn(plain, log_prob, cond.scale)

    return make


def sample_conditional(
    cfg: RunConfig, workdir: str, *, mesh: Mesh | None = None, step: int | None = None, stream=None
) -> dict:
    """Draws config.sampling.num_samples conditional samples; returns the arrays it saved."""
    cond = conditioning.ConditionConfig.from_config(cfg.raw)
    workdir = common.prepare_workdir(workdir)
    exp = common.build(cfg, mesh)
    if cond.guided and cond.guidance == "cfg" and _num_classes(cfg) <= 0:
        raise ValueError(
            "config.condition.guidance='cfg' needs a class-conditional score model "
            "(config.model.num_classes > 0, trained with config.model.class_dropout > 0); "
            "or use config.condition.guidance=classifier"
        )
    log = MetricsLogger(workdir, enabled=common.is_main_process(), stream=stream)
    ckpts = common.open_checkpoints(workdir)
    if ckpts.latest_step() is None:
        raise ValueError(
            f"no checkpoint in {workdir}; train first with --mode=train --workdir={workdir}"
        )
    state = ckpts.restore(exp.state_like(), step)
    ckpts.close()
    step = int(state.step)
    classifier, cparams = None, None
    if cond.guided and cond.guidance == "classifier":
        from score_sde.modes import train_classifier

        where = cond.classifier_workdir or os.path.join(workdir, train_classifier.CLASSIFIER_DIR)
        classifier, cparams = train_classifier.load_classifier(cfg, where, exp.mesh)

    s = cfg.sampling
    num = s.num_samples
    originals, mask = _condition_inputs(cfg, exp, cond, num)
    labels = _labels(cfg, cond, num)
    n_dev = exp.mesh.devices.size
    b = -(-min(s.batch_size, num) // n_dev) * n_dev
    sampler = _make_sampler(exp, cond, s.method, b)
    make_score = _score_builder(exp, cond, classifier)

    @jax.jit
    def run(params, cparams, key, y, m, lab):
        return sampler(key, make_score(params, cparams, lab), y, m)

    from score_sde import datasets

    scaler = datasets.get_data_scaler(cfg.raw)
    sharding = parallel.batch_sharding(exp.mesh)

    def put(a):  # rows [b, ...] identical on every process -> a global array sharded on 'data'
        a = np.ascontiguousarray(a)
        return jax.make_array_from_callback(a.shape, sharding, lambda idx: a[idx])

    key = jax.random.fold_in(jax.random.fold_in(exp.key(common.KEY_SAMPLES), step), 3)
    out, nfe = [], 0
    for i in range(-(-num // b)):
        rows = np.arange(i * b, (i + 1) * b) % num
        y = np.zeros((b, *exp.shape), np.float32)
        m = np.zeros((b, *exp.shape), np.float32)
        if originals is not None:
            y = np.asarray(scaler(originals[rows]), np.float32)
            if cond.task == "colorize":  # the known channel is the gray image, as 1 channel
                y = y.mean(-1, keepdims=True)
            else:
                m = mask[rows]
        lab = None if labels is None else put(labels[rows])
        x, nfe = run(state.ema_params, cparams, jax.random.fold_in(key, i), put(y), put(m), lab)
        out.append(parallel.to_host(x))
    samples = np.concatenate(out)[:num]
    nfe = int(parallel.to_host(jnp.asarray(nfe)))

    method = s.method
    tag = cond.task if not cond.guided else f"{cond.task}_{cond.guidance}{cond.scale:g}"
    stem = os.path.join(workdir, "samples", f"ckpt_{step}_{tag}_{method}")
    saved = {"samples": common.to_uint8_images(samples, cfg), "samples_model": samples}
    if labels is not None:
        saved["labels"] = labels
    if originals is not None:
        saved["originals"] = image_io.to_uint8(originals)
        saved["inputs"] = image_io.to_uint8(_shown_inputs(cond, originals, mask))
    if mask is not None:
        saved["mask"] = mask.astype(np.uint8)
    if common.is_main_process():
        os.makedirs(os.path.dirname(stem), exist_ok=True)
        np.savez(stem + ".npz", **saved)
        image_io.save_png(stem + ".png", _grid(cond, saved, _num_classes(cfg)))
    log.info(
        f"{num} {tag} samples from checkpoint {step} with {method} ({nfe} score evaluations "
        f"per batch) -> {stem}.npz, {stem}.png"
    )
    log.close()
    return saved


def _shown_inputs(cond, originals, mask):
    """What the sampler saw: the image with its unknown region at 0.5 gray, or the gray image."""
    if cond.task == "colorize":
        return np.broadcast_to(originals.mean(-1, keepdims=True), originals.shape)
    return originals * mask + 0.5 * (1 - mask)


def _grid(cond, saved, num_classes, max_rows=16) -> np.ndarray:
    samples = saved["samples"]
    c = samples.shape[-1]
    if "originals" not in saved:  # class grid: one column per label (labels cycle) or 8 per row
        ncol = num_classes if (cond.label < 0 and cond.guided and num_classes) else 8
        n = min(len(samples), ncol * max_rows)
        return image_io.make_grid(samples[:n], nrow=ncol)
    r = cond.repeats
    rows = []
    for i in range(0, min(len(samples), r * max_rows), r):
        tiles = [saved["inputs"][i]]
        if "mask" in saved:
            tiles.append(
                np.broadcast_to(saved["mask"][i] * 255, saved["inputs"][i].shape[:2] + (c,))
            )
        tiles += list(samples[i : i + r])
        tiles += [np.zeros_like(samples[i])] * (r - len(samples[i : i + r]))
        tiles.append(saved["originals"][i])
        rows += tiles
    return image_io.make_grid(np.stack(rows).astype(np.uint8), nrow=len(tiles))
