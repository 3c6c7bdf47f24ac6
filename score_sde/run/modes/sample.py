"""Sample mode: a checkpoint's EMA params -> config.sampling.num_samples samples on all devices,
unconditional or with a condition (config.condition):

- task 'none': any sampler of score_sde.sampling (config.sampling.method 'pc' with any predictor /
  corrector, or 'ode'). Writes `samples/ckpt_<step>_<method>_nfe<N>_seed<S>_<config hash>.{npz,png}`
  (sample_files.stem: other settings never overwrite; the npz holds step, method, num_steps, nfe,
  seed and config_hash beside the samples).
- task 'class': class-conditional samples, labels config.condition.label or 0..K-1 in turn, with
  classifier-free guidance ('cfg': (1 + w) s(x, y) - w s(x); w = 0 is the plain conditional
  model) or classifier guidance ('classifier': s(x) + w grad log p_t(y | x); w = 1 is Bayes' rule);
  w = config.condition.scale.
- task 'inpaint': the known pixels (mask = 1) of the condition images are kept, the rest sampled
  (score_sde.controllable, PC or ODE); a label adds guidance.
- task 'colorize': RGB samples whose gray channel is the condition image's.

With config.sampling.guide (a smaller or earlier run of the same data and SDE) every task and
sampler uses the autoguided score s_g + w (s - s_g) (score_sde.guidance.autoguided_score; w =
config.sampling.guide_weight), built where the score is built from params (Experiment.score_fn).

Conditional samples go to `samples/ckpt_<step>_<task>..._<method>_nfe<N>_...npz` (samples, originals,
inputs, mask: uint8 images; labels; samples_model: float model-space samples) and a PNG grid: one
row per input (input with the unknown region grayed, mask, samples, original) or, for classes,
one column per label (y=<label> above it), enlarged to image_io.MIN_SIDE. Every round is one
jitted sampler call over the whole mesh.
"""

from __future__ import annotations

import functools
import os
from typing import TextIO

import jax
import numpy as np
from jax.sharding import Mesh

from score_sde import controllable, guidance, parallel
from score_sde.config import Config
from score_sde.data import datasets, preprocess
from score_sde.run import experiment, sample_files
from score_sde.run.opening import open_run
from score_sde.store import image_io
from score_sde.store.checkpoint import require_checkpoint, restore_ema


def sample(
    cfg: Config,
    workdir: str,
    *,
    mesh: Mesh | None = None,
    step: int | None = None,
    stream: TextIO | None = None,
    overwrite: bool = False,
) -> np.ndarray | dict[str, np.ndarray]:
    """Draws the samples from checkpoint `step` (default: the newest). Returns the samples
    [N, ...] (unconditional) or the arrays it saved (conditional). Samples of the same settings
    already in samples/ are an error (nothing is drawn) unless `overwrite`."""
    exp = experiment.build(cfg, mesh)
    cond, s = cfg.condition, cfg.sampling
    if cond.guided and cond.guidance == "cfg" and cfg.model.num_classes <= 0:
        raise ValueError(
            "config.condition.guidance='cfg' needs a class-conditional score model "
            "(config.model.num_classes > 0, trained with config.model.class_dropout > 0); "
            "or use config.condition.guidance=classifier"
        )
    if cond.guided and cond.guidance == "cfg" and s.guide:
        raise ValueError(
            f"config.sampling.guide ({s.guide!r}) is autoguidance, config.condition.guidance="
            "'cfg' classifier-free guidance: use one of them (set config.sampling.guide='')"
        )
    with open_run(
        workdir, lock=None, read_only=True, check=require_checkpoint, stream=stream
    ) as run:
        params, step = restore_ema(run.ckpts, exp.state_like(), step)
        tag = _tag(cond)
        if not overwrite:
            sample_files.refuse_overwrite(
                run.workdir, sample_files.provenance(cfg, step, s.method, 0), tag
            )
        params = exp.sampling_params(params)  # Guided with config.sampling.guide's
        if cond.task == "none" and not cond.guided:
            key = jax.random.fold_in(jax.random.fold_in(exp.key(experiment.KEY_SAMPLES), step), 2)
            x, nfe = exp.sample(params, key, s.num_samples, desc=f"sampling {s.method}")
            what = (
                f"{len(x)} samples from checkpoint {step} with {s.method} "
                f"({nfe} score evaluations per batch)"
            )
            info = sample_files.provenance(cfg, step, s.method, nfe)
            saved = {"samples": sample_files.on_host(x, cfg.data), **info}
            sample_files.write(run, sample_files.stem(run.workdir, info), saved, what)
            return x
        saved, nfe = _sample_conditional(exp, params, step, run.workdir)
        what = (
            f"{s.num_samples} {tag} samples from checkpoint {step} with {s.method} ({nfe} score "
            "evaluations per batch)"
        )
        picture = _grid(cond, saved, cfg.model.num_classes)
        info = sample_files.provenance(cfg, step, s.method, nfe)
        path = sample_files.stem(run.workdir, info, tag)
        sample_files.write(run, path, {**saved, **info}, what, picture)
        return saved


def _sample_conditional(exp: experiment.Experiment, params, step: int, workdir: str):
    """(arrays to save, NFE) of config.condition's task."""
    cfg = exp.cfg
    cond, num = cfg.condition, cfg.sampling.num_samples
    classifier, cparams = None, None
    if cond.guided and cond.guidance == "classifier":
        where = cond.classifier_workdir or os.path.join(workdir, experiment.CLASSIFIER_DIR)
        classifier, cparams = experiment.load_classifier(cfg, where, exp.mesh)
    originals, mask = _condition_inputs(exp, num)
    labels = _labels(cfg, num)
    b = exp.round_size(num, cfg.sampling.batch_size)
    sampler = exp.sampler(cfg.sampling.method, b, cond.task)
    make_score = _score_builder(exp, classifier)

    @jax.jit
    def run(params, cparams, key, y, m, lab):
        return sampler(key, make_score(params, cparams, lab), y, m)

    scaler = preprocess.get_data_scaler(cfg.data)

    def inputs(rows):
        """(y, mask, labels) of one round, as global arrays sharded like the batch."""
        y = np.zeros((b, *exp.shape), np.float32)
        m = np.zeros((b, *exp.shape), np.float32)
        if originals is not None:
            y = np.asarray(scaler(originals[rows]), np.float32)
            if cond.task == "colorize":  # the known channel is the gray image, as 1 channel
                y = y.mean(-1, keepdims=True)
            else:
                m = mask[rows]
        lab = None if labels is None else labels[rows]
        return parallel.shard_rows((y, m, lab), exp.mesh)

    key = jax.random.fold_in(jax.random.fold_in(exp.key(experiment.KEY_SAMPLES), step), 3)
    out, nfes = [], []
    desc = f"sampling {cfg.sampling.method} ({cond.task})"
    for x, n in exp.draw(functools.partial(run, params, cparams), key, num, b, inputs, desc):
        out.append(parallel.to_host(x))
        nfes.append(n)
    x, nfe = np.concatenate(out)[:num], nfes[-1]
    saved = {"samples": sample_files.on_host(x, cfg.data), "samples_model": x}
    if labels is not None:
        saved["labels"] = labels
    if originals is not None:
        saved["originals"] = image_io.to_uint8(originals)
        saved["inputs"] = image_io.to_uint8(_shown_inputs(cond, originals, mask))
    if mask is not None:
        saved["mask"] = mask.astype(np.uint8)
    return saved, int(parallel.to_host(nfe))


def _tag(cond) -> str:
    """The file tag of a conditional task ('' unconditional): inpaint, class_cfg1.5, ..."""
    if cond.task == "none" and not cond.guided:
        return ""
    return cond.task if not cond.guided else f"{cond.task}_{cond.guidance}{cond.scale:g}"


def _fit(images: np.ndarray, n: int, shape: tuple[int, ...], what: str) -> np.ndarray:
    """`images` [N, H, W, C] -> [n, *shape]: cycled to n rows, channels broadcast (1 -> C)."""
    if images.shape[1:3] != tuple(shape[:2]):
        raise ValueError(
            f"{what} images are {images.shape[1]}x{images.shape[2]}, the model's are "
            f"{shape[0]}x{shape[1]}; resize them first"
        )
    if images.shape[-1] not in (1, shape[-1]):
        raise ValueError(f"{what} images have {images.shape[-1]} channels, the model {shape[-1]}")
    images = np.broadcast_to(images, images.shape[:3] + (shape[-1],))
    return images[np.arange(n) % len(images)]


def _condition_inputs(exp: experiment.Experiment, num: int):
    """(originals [n, *shape] in [0, 1] or None, mask [n, *shape] or None) for `num` samples."""
    cfg, cond, shape = exp.cfg, exp.cfg.condition, exp.shape
    if cond.task not in ("inpaint", "colorize"):
        return None, None
    if len(shape) != 3:
        raise ValueError(f"config.condition.task={cond.task!r} needs image data, shape is {shape}")
    n_inputs = -(-num // cond.repeats)
    if cond.image:
        images = image_io.read_images(cond.image)
    else:
        ds = datasets.get_process_dataset(
            cfg.data, "test", global_batch=exp.mesh.devices.size, seed=cfg.seed
        )
        batch = next(iter(ds.epoch(n_inputs)))
        images = np.asarray(preprocess.to_images(batch["x"][batch["mask"]], cfg.data))
    originals = _fit(images, n_inputs, shape, "condition")
    originals = np.repeat(originals, cond.repeats, axis=0)[:num]
    if cond.task == "colorize":
        return originals, None
    if cond.mask in controllable.NAMED_MASKS:
        mask = controllable.named_mask(cond.mask, shape, cfg.seed)[None]
    else:
        mask = image_io.read_images(cond.mask)
    mask = _fit((mask > 0.5).astype(np.float32), n_inputs, shape, "mask")
    return originals, np.repeat(mask, cond.repeats, axis=0)[:num]


def _labels(cfg: Config, num: int):
    cond = cfg.condition
    if not cond.guided:
        return None
    k = cfg.model.num_classes if cond.guidance == "cfg" else cfg.classifier.num_classes
    if cond.label >= k:
        raise ValueError(f"config.condition.label ({cond.label}) must be < the {k} classes")
    return np.full(num, cond.label, np.int32) if cond.label >= 0 else np.arange(num) % k


def _score_builder(exp: experiment.Experiment, classifier):
    """(params, classifier params, labels) -> score_fn(x, t), with the configured guidance."""
    cond = exp.cfg.condition
    score_apply = exp.score_apply

    def make(params, cparams, labels):
        plain = exp.score_fn(params)
        if labels is None:
            return plain
        if cond.guidance == "cfg":
            null = exp.cfg.model.num_classes
            return guidance.network_cfg_score_fn(score_apply, params, labels, null, cond.scale)
        log_prob = guidance.classifier_log_prob_fn(classifier, cparams, labels)
        return guidance.classifier_guided_score_fn(plain, log_prob, cond.scale)

    return make


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
        grid = image_io.upscale(image_io.make_grid(samples[:n], nrow=ncol))
        labels = saved.get("labels")
        if labels is None or len(set(labels[:n].tolist())) < 2:
            return grid
        if any(labels[j] != labels[j % ncol] for j in range(n)):
            return grid
        return image_io.label_columns(grid, [f"y={y}" for y in labels[: min(ncol, n)]])
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
