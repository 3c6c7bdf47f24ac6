"""Device-side Inception features, gathered across hosts, and metrics against reference statistics.

Eval loop (samples from any sampler, every process runs the same code):

    inception = get_inception_fn(mesh=mesh)                  # loads the converted weights
    acc = FeatureAccumulator()
    for i in range(num_batches):
        x = sampler(key_i, score_fn)                         # global [B, H, W, C], model space
        acc.add(inception(inverse_scaler(x)))                 # float [0, 1] -> rounded to 8 bit
    metrics = compute_metrics(acc, load_statistics("cifar10_train_stats.npz"))
    # {"fid", "inception_score", "inception_score_std", "kid", "kid_std", "num_samples"}

Reference statistics of a dataset split: `compute_dataset_statistics(config, "train", out_path)`
or the command `python -m score_sde.evaluation.reference_stats` (see that module).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from score_sde import parallel
from score_sde.evaluation import fid as fid_lib
from score_sde.evaluation import split
from score_sde.evaluation.inception import InceptionV3, load_inception


def to_inception_input(images: jax.Array, quantize: bool = True) -> jax.Array:
    """[B, H, W, C] uint8, or float in [0, 1] -> float32 in [0, 1] with 3 channels.

    Floats are clipped and, if `quantize`, rounded to 8 bits (round(255 x) / 255) as a saved PNG
    would be; the original truncated instead. One channel is repeated to three.
    """
    if images.dtype == jnp.uint8:
        x = images.astype(jnp.float32) / 255.0
    else:
        x = jnp.clip(images.astype(jnp.float32), 0.0, 1.0)
        if quantize:
            x = jnp.round(x * 255.0) / 255.0
    if x.shape[-1] == 1:
        x = jnp.repeat(x, 3, axis=-1)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"images must be [B, H, W, 1 or 3], got shape {images.shape}")
    return x


def get_inception_fn(
    model: InceptionV3 | None = None,
    *,
    mesh: Mesh | None = None,
    weights: str | os.PathLike | None = None,
    quantize: bool = True,
) -> Callable[[jax.Array], dict[str, jax.Array]]:
    """Jitted `images -> {"pool_3": [B, 2048], "logits": [B, 1008]}` (float32, sharded like the
    batch on `mesh`'s first axis). `model` defaults to `load_inception(weights)`."""
    model = model if model is not None else load_inception(weights)
    graphdef, state = nnx.split(model)
    batch_spec = None
    if mesh is not None:
        state = parallel.replicate(jax.tree.map(np.asarray, state), mesh)
        batch_spec = parallel.batch_sharding(mesh)

    @jax.jit
    def apply(state, images):
        x = to_inception_input(images, quantize)
        if batch_spec is not None and x.shape[0] % mesh.devices.size == 0:
            x = jax.lax.with_sharding_constraint(x, batch_spec)
        return nnx.merge(graphdef, state)(x)

    return lambda images: apply(state, images)


class FeatureAccumulator:
    """Collects Inception features of global batches on the host (identical on every process)."""

    def __init__(self):
        self._pool: list[np.ndarray] = []
        self._logits: list[np.ndarray] = []

    def add(self, features: dict[str, jax.Array], mask=None) -> None:
        """Append {"pool_3", "logits"} of a global batch; `mask` [B] (global) drops padding."""
        pool, logits = parallel.to_host((features["pool_3"], features["logits"]))
        if mask is not None:
            mask = parallel.to_host(mask).astype(bool)
            pool, logits = pool[mask], logits[mask]
        self._pool.append(pool.astype(np.float32))
        self._logits.append(logits.astype(np.float32))

    def __len__(self) -> int:
        return sum(len(p) for p in self._pool)

    @property
    def pool_3(self) -> np.ndarray:
        return np.concatenate(self._pool) if self._pool else np.zeros((0, 2048), np.float32)

    @property
    def logits(self) -> np.ndarray:
        return np.concatenate(self._logits) if self._logits else np.zeros((0, 1008), np.float32)


def compute_metrics(
    features: FeatureAccumulator | tuple[np.ndarray, np.ndarray],
    reference: dict[str, np.ndarray] | str | os.PathLike | None = None,
    *,
    num_samples: int | None = None,
    is_splits: int = 1,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
) -> dict[str, float]:
    """FID (needs reference `mu`, `sigma`), IS, and KID (needs reference `pool_3`).

    `features`: an accumulator or (pool_3 [N, 2048], logits [N, 1008]); the first `num_samples`
    rows are used if given. `reference`: a dict or the path of a statistics `.npz`.
    """
    if isinstance(features, FeatureAccumulator):
        pool, logits = features.pool_3, features.logits
    else:
        pool, logits = (np.asarray(a) for a in features)
    if num_samples is not None:
        if len(pool) < num_samples:
            raise ValueError(f"asked for {num_samples} samples, have features of {len(pool)}")
        pool, logits = pool[:num_samples], logits[:num_samples]
    is_mean, is_std = fid_lib.inception_score(logits, num_splits=is_splits)
    out = {
        "num_samples": int(len(pool)),
        "inception_score": is_mean,
        "inception_score_std": is_std,
    }
    if reference is not None:
        if not isinstance(reference, dict):
            reference = fid_lib.load_statistics(reference)
        mu, sigma = fid_lib.compute_statistics(pool)
        out["fid"] = fid_lib.frechet_distance(mu, sigma, reference["mu"], reference["sigma"])
        if "pool_3" in reference:
            out["kid"], out["kid_std"] = fid_lib.kernel_inception_distance(
                pool, reference["pool_3"], num_subsets=kid_subsets, subset_size=kid_subset_size
            )
    return out


def dataset_features(
    batches: Iterable[dict[str, np.ndarray]],
    inverse_scaler: Callable,
    inception_fn: Callable,
    *,
    mesh: Mesh | None = None,
    max_examples: int = 0,
    total: int | None = None,
    desc: str = "Inception features",
) -> FeatureAccumulator:
    """Features of `Dataset.epoch(...)` batches ({"x" model space, "mask"}) from every process,
    with progress (process 0, score_sde.store.progress) over `total` images."""
    from score_sde.store import progress

    acc = FeatureAccumulator()
    total = min(total, max_examples) if total and max_examples else total or max_examples or None
    bar = progress.bar(total, desc, "img", enabled=jax.process_index() == 0)
    with bar:
        for batch in batches:
            images = split.global_batch(np.asarray(inverse_scaler(batch["x"]), np.float32), mesh)
            before = len(acc)
            acc.add(inception_fn(images), mask=split.global_batch(batch["mask"], mesh))
            bar.update(len(acc) - before)
            if max_examples and len(acc) >= max_examples:
                break
    return acc


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def estimate_line(num_images: int, batch_size: int, seconds_per_batch: float, devices: int) -> str:
    """`reference statistics: N images on D <backend> device(s), about T at R img/s` (and a GPU
    hint on CPU), from the time of one global batch of `batch_size`."""
    seconds_per_batch = max(seconds_per_batch, 1e-9)
    rate = batch_size / seconds_per_batch
    total = -(-num_images // batch_size) * seconds_per_batch
    backend = jax.default_backend()
    line = (
        f"reference statistics: {num_images} images on {devices} {backend} device(s), "
        f"about {_duration(total)} at {rate:.{1 if rate < 100 else 0}f} img/s"
    )
    return line + " (a GPU takes minutes)" if backend == "cpu" else line


def _announcing_estimate(
    inception_fn: Callable, num_images: int, batch_size: int, devices: int
) -> Callable:
    """`inception_fn` timing its second call (the first after compilation) and, when batches are
    left, printing `estimate_line` from process 0 (above the progress bar)."""
    calls = 0

    def timed(images):
        nonlocal calls
        calls += 1
        if calls != 2 or -(-num_images // batch_size) <= 2:
            return inception_fn(images)
        start = time.perf_counter()
        out = jax.block_until_ready(inception_fn(images))
        seconds = time.perf_counter() - start
        if jax.process_index() == 0:
            from tqdm import tqdm

            tqdm.write(estimate_line(num_images, batch_size, seconds, devices), file=sys.stderr)
        return out

    return timed


def compute_dataset_statistics(
    data,
    split: str,
    out_path: str | os.PathLike | None = None,
    *,
    batch_size: int = 250,
    weights: str | os.PathLike | None = None,
    mesh: Mesh | None = None,
    max_examples: int = 0,
    keep_activations: int = 10_000,
    inception_fn: Callable | None = None,
) -> dict[str, np.ndarray]:
    """Reference statistics of `split` of the typed config.data `data` (no flip, no
    dequantization).

    Returns {"mu", "sigma", "pool_3" (first `keep_activations` rows, for KID)} and writes them to
    `out_path` (process 0 only) in pytorch-fid's layout. `batch_size` is global. Process 0 prints
    the expected time (`estimate_line`) once the first batch after compilation is timed.
    """
    from score_sde.data import datasets, preprocess

    ds = datasets.get_process_dataset(
        data, split, global_batch=batch_size, seed=0, uniform_dequantization=False, augment=False
    )
    inception_fn = inception_fn or get_inception_fn(mesh=mesh, weights=weights)
    num_images = min(ds.num_examples, max_examples) if max_examples else ds.num_examples
    devices = mesh.devices.size if mesh is not None else 1
    acc = dataset_features(
        ds.epoch(),
        preprocess.get_data_inverse_scaler(data),
        _announcing_estimate(inception_fn, num_images, batch_size, devices),
        mesh=mesh,
        max_examples=max_examples,
        total=ds.num_examples,
        desc=f"reference statistics: {split} split",
    )
    pool = acc.pool_3[:max_examples] if max_examples else acc.pool_3
    mu, sigma = fid_lib.compute_statistics(pool)
    stats = {"mu": mu, "sigma": sigma}
    if keep_activations:
        stats["pool_3"] = pool[:keep_activations]
    if out_path is not None and jax.process_index() == 0:
        fid_lib.save_statistics(out_path, pool, keep_activations=keep_activations)
    return stats
