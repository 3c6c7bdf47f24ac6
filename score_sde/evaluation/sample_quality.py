"""Sample quality: draw samples in rounds, their Inception features, FID / IS / KID.

    drawn, nfe = draw(sample_fn, num, batch, features=inception_features(inception_fn, to_images))
    metrics(drawn, "assets/stats/cifar10_32_train_stats.npz")
    # {"fid", "inception_score", "inception_score_std", "kid", "kid_std", "num_samples"}

`sample_fn(i) -> (x [batch, ...] global, nfe)` draws round i (its key is the caller's choice);
`cache(i, compute)` may keep each round's arrays (a resumable eval passes `Rounds.get`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import jax
import numpy as np

from score_sde import parallel
from score_sde.evaluation import evaluator
from score_sde.evaluation import inception as inception_lib
from score_sde.evaluation.split import Cache, no_cache
from score_sde.store import fs, image_io

# Image samples kept as uint8 (for <method>.npz) when FID runs over many more.
MAX_SAVED_SAMPLES = 10_000

SampleFn = Callable[[int], tuple[jax.Array, jax.Array]]
FeaturesFn = Callable[[jax.Array, int], dict[str, np.ndarray]]


def default_fid_stats(data) -> str:
    """assets/stats/<dataset>[_<category>]_<image_size>_train_stats.npz for config.data."""
    parts = [data.dataset.lower().replace("/", "_")]
    if data.category:
        parts.append(data.category)
    if data.image_size:
        parts.append(str(data.image_size))
    return os.path.join("assets", "stats", "_".join(parts) + "_train_stats.npz")


def required_files(eval_cfg, data, shape: tuple[int, ...]) -> tuple[str, str] | None:
    """(Inception weights path, reference statistics path) when an eval of config.eval
    `eval_cfg` computes FID/IS/KID for samples of `shape`, else None (2-D data, sampling or FID
    off). Raises ValueError saying how to get a missing file."""
    e = eval_cfg
    if len(shape) != 3 or not (e.enable_sampling and e.enable_fid):
        return None
    weights = inception_lib.weights_path(e.inception_weights)
    if not fs.path(weights).is_file():
        raise ValueError(
            f"FID/IS/KID need the Inception weights, not found at {weights}: download "
            f"{inception_lib.WEIGHTS_URL} and convert it once with `python -m "
            f"score_sde.evaluation.inception pt_inception-2015-12-05-6726825d.pth --out "
            f"{weights}` (no torch needed), or point config.eval.inception_weights (or "
            "$SCORE_SDE_INCEPTION_WEIGHTS) at the converted .npz; --config.eval.enable_fid=False "
            "skips sample quality"
        )
    stats = os.path.expanduser(e.fid_stats or default_fid_stats(data))
    if not fs.path(stats).is_file():
        raise ValueError(
            f"FID/KID need reference statistics of the data, not found at {stats}: make them "
            "once with `python -m score_sde.evaluation.reference_stats --config=<this run's "
            f"config file> --split=train --out={stats}`, or set config.eval.fid_stats to a "
            "pytorch-fid .npz (mu, sigma); --config.eval.enable_fid=False skips sample quality"
        )
    return weights, stats


def inception_features(
    inception_fn: Callable[[jax.Array], dict[str, jax.Array]],
    to_images: Callable[[jax.Array], jax.Array],
) -> FeaturesFn:
    """(x [b, H, W, C] global, model space; valid) -> Inception features of the first `valid`
    rows: {"pool_3" [valid, 2048], "logits" [valid, 1008], "images" uint8 [valid, H, W, C]},
    `to_images` mapping model space to [0, 1]."""

    def features(x: jax.Array, valid: int) -> dict[str, np.ndarray]:
        images = to_images(x)
        feats = parallel.to_host(inception_fn(images))
        return {
            "pool_3": feats["pool_3"][:valid].astype(np.float32),
            "logits": feats["logits"][:valid].astype(np.float32),
            "images": image_io.to_uint8(parallel.to_host(images)[:valid]),
        }

    return features


def draw(
    sample_fn: SampleFn,
    num: int,
    batch: int,
    *,
    features: FeaturesFn | None = None,
    cache: Cache = no_cache,
    keep: int = MAX_SAVED_SAMPLES,
) -> tuple[dict[str, np.ndarray], int]:
    """`num` samples in ceil(num / batch) rounds of `sample_fn`, on the host of every process,
    and the last round's number of score evaluations.

    Without `features`: {"samples": [num, ...] as drawn}. With them: {"pool_3" [num, 2048],
    "logits" [num, 1008], "images": uint8 (of the rounds that start below `keep`)}.
    """

    def compute(i: int) -> dict:
        x, nfe = sample_fn(i)
        valid = min(batch, num - i * batch)
        if features is None:
            return {"samples": parallel.to_host(x)[:valid], "nfe": parallel.to_host(nfe)}
        arrays = features(x, valid)
        if i * batch >= keep:
            del arrays["images"]
        return {**arrays, "nfe": parallel.to_host(nfe)}

    parts = [cache(i, functools.partial(compute, i)) for i in range(-(-num // batch))]
    out = {}
    for k in ("samples", "pool_3", "logits", "images"):
        rows = [p[k] for p in parts if k in p]
        if rows:
            out[k] = np.concatenate(rows)
    return out, int(parts[-1]["nfe"])


def metrics(drawn: dict, reference: str | os.PathLike | dict[str, np.ndarray]) -> dict:
    """FID / IS / KID of the features in `drawn` against the reference statistics (a pytorch-fid
    .npz path or its dict: `mu`, `sigma`, and `pool_3` for KID)."""
    pool, logits = drawn["pool_3"], drawn["logits"]
    return evaluator.compute_metrics((pool, logits), reference, num_samples=len(pool))
