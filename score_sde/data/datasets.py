"""Datasets behind one random-access interface, with the paper's preprocessing.

    ds = get_dataset(config, "train", batch_size=128, seed=0,
                     process_index=jax.process_index(), process_count=jax.process_count())
    batch = ds.batch(step)            # {"x": [128, H, W, C] in model space, "label"?: [128]}
    for b in ds.epoch(500):           # one ordered pass; {"x", "mask" [500] bool, "label"?}
        ...

Batch order is a pure function of (seed, step): global position `i = step * G + p * b + j`
(G = b * process_count) reads example `perm_e[i mod N]` with `perm_e` a permutation drawn from
(seed, epoch e = i // N); process p takes its own slice of every global batch, so shards are
disjoint and a resumed run replays the same data. Augmentations (flip, uniform dequantization) are
drawn from (seed, global position), so they do not depend on the number of processes either.

Where the parts live: `sources` reads the raw examples (TFDS, .npz, folders, digits) and checks
them against config.data when opened; `preprocess` brings each to [0, 1] at image_size and holds
the scalers; `toy_stream.ToyDataset` serves 'toy/<name>' with the same interface.

Per example, as the original: the preprocessing; random horizontal flip if
`config.data.random_flip` and training; uniform dequantization `(255 x + U) / 256` if
`config.data.uniform_dequantization` (or `uniform_dequantization=True` for bits/dim); then the
data scaler ([0, 1] -> [-1, 1] if centered).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np

from score_sde.config import DataConfig
from score_sde.data import preprocess, sources
from score_sde.data.toy_stream import ToyDataset


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *(int(s) for s in stream)])


class Dataset:
    """Random-access dataset: `batch(step)` for training, `epoch(batch_size)` for evaluation.

    `batch_size` is per process; the global batch is `batch_size * process_count`.
    """

    def __init__(
        self,
        source,
        preprocess: Callable[[np.ndarray], np.ndarray],
        scaler: Callable,
        *,
        batch_size: int,
        seed: int,
        process_index: int = 0,
        process_count: int = 1,
        random_flip: bool = False,
        uniform_dequantization: bool = False,
        name: str = "",
        notes: tuple[str, ...] = (),
    ):
        if len(source) == 0:
            raise ValueError(f"dataset {name!r} is empty")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= process_index < process_count:
            raise ValueError(
                f"process_index ({process_index}) must be in [0, process_count={process_count})"
            )
        self.source, self.preprocess, self.scaler = source, preprocess, scaler
        self.notes = notes  # the data choices to say at start (sources.choices)
        self.batch_size, self.seed = int(batch_size), int(seed)
        self.process_index, self.process_count = int(process_index), int(process_count)
        self.random_flip, self.uniform_dequantization = random_flip, uniform_dequantization
        self.name = name
        self._perm_cache: dict[int, np.ndarray] = {}

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, num_examples={self.num_examples}, batch_size="
            f"{self.batch_size}, process {self.process_index}/{self.process_count})"
        )

    @property
    def num_examples(self) -> int:
        return len(self.source)

    @property
    def element_shape(self) -> tuple[int, ...]:
        return self.batch(0)["x"].shape[1:]

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._perm_cache:
            if len(self._perm_cache) > 2:
                self._perm_cache.clear()
            self._perm_cache[epoch] = _rng(self.seed, 0, epoch).permutation(self.num_examples)
        return self._perm_cache[epoch]

    def positions(self, step: int) -> np.ndarray:
        """Global stream positions [batch_size] that this process reads at `step`."""
        start = step * self.batch_size * self.process_count + self.process_index * self.batch_size
        return np.arange(start, start + self.batch_size, dtype=np.int64)

    def indices(self, step: int) -> np.ndarray:
        """Example indices [batch_size] that this process reads at `step`."""
        pos = self.positions(step)
        epochs, offsets = np.divmod(pos, self.num_examples)
        out = np.empty_like(pos)
        for e in np.unique(epochs):
            sel = epochs == e
            out[sel] = self._permutation(int(e))[offsets[sel]]
        return out

    def _load(self, idx: np.ndarray, keys: Sequence[tuple[int, ...]], augment: bool):
        raw, labels = self.source.get(idx)
        xs = []
        for image, key in zip(raw, keys, strict=True):
            x = self.preprocess(image)
            rng = _rng(self.seed, *key)
            if augment and self.random_flip and x.ndim == 3 and rng.random() < 0.5:
                x = x[:, ::-1]
            if self.uniform_dequantization:
                x = (rng.random(x.shape, dtype=np.float32) + x * 255.0) / 256.0
            xs.append(x)
        out = {"x": np.asarray(self.scaler(np.stack(xs).astype(np.float32)))}
        if labels is not None:
            out["label"] = np.asarray(labels, np.int32)
        return out

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """This process's slice of global batch `step`: {"x": [batch_size, ...], "label"?}."""
        pos = self.positions(step)
        return self._load(self.indices(step), [(1, int(p)) for p in pos], augment=True)

    def num_batches(self, batch_size: int | None = None) -> int:
        """Number of batches `epoch(batch_size)` yields (the same on every process)."""
        g = (batch_size or self.batch_size) * self.process_count
        return -(-self.num_examples // g)

    def epoch(
        self, batch_size: int | None = None, *, repeat: int = 0
    ) -> Iterator[dict[str, np.ndarray]]:
        """One ordered pass (no shuffle, no flip): {"x", "mask" [b] bool, "label"?} per batch.

        Global batch k covers examples [k G, (k + 1) G), G = b * process_count; this process
        takes its slice. The last batch is padded (repeating example 0) with mask False, so every
        process yields `num_batches(b)` batches of the same shape. Dequantization noise (if on)
        is drawn from (seed, repeat, index): use `repeat` for several draws (bits/dim).
        """
        b = batch_size or self.batch_size
        g = b * self.process_count
        for k in range(self.num_batches(b)):
            idx = np.arange(k * g + self.process_index * b, k * g + (self.process_index + 1) * b)
            mask = idx < self.num_examples
            idx = np.where(mask, idx, 0)
            out = self._load(idx, [(2, repeat, int(i)) for i in idx], augment=False)
            out["mask"] = mask
            yield out


def prefetch(
    dataset: Dataset | ToyDataset, steps: Iterable[int], buffer: int = 2
) -> Iterator[dict[str, np.ndarray]]:
    """`dataset.batch(step)` for each step, read `buffer` steps ahead on a background thread.

    The batches are the same as without prefetching (each is a pure function of its step).
    """
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending: collections.deque = collections.deque()
        for step in steps:
            pending.append(pool.submit(dataset.batch, step))
            if len(pending) > buffer:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def get_dataset(
    data: DataConfig,
    split: str,
    *,
    batch_size: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
    uniform_dequantization: bool | None = None,
    augment: bool | None = None,
    num_classes: int = 0,
    classes_field: str = "config.model.num_classes",
):
    """The dataset `config.data.dataset` for `split` ('train' | 'test'; 'eval' = 'test').

    The data are checked against `data` first (`check_against`: one ValueError naming the field
    and the fix); with `num_classes` > 0 (a class-conditional model's `classes_field`) they must
    hold integer labels in [0, num_classes). `batch_size` is per process. `uniform_dequantization` overrides
    `config.data.uniform_dequantization` (bits/dim uses True); `augment` (default: split ==
    'train') enables the random flip of `config.data.random_flip`.
    """
    scaler = preprocess.get_data_scaler(data)
    if data.is_toy:
        toy = ToyDataset(
            data.dataset.split("/", 1)[1],
            sources.canonical_split(split),
            scaler,
            batch_size=batch_size,
            seed=seed,
            process_index=process_index,
            process_count=process_count,
        )
        toy.check_against(data)
        if num_classes > 0:
            raise ValueError(
                f"{classes_field} ({num_classes}) asks for a class-conditional model, but "
                f"config.data.dataset {data.dataset!r} has no labels; use labelled data or set "
                f"--{classes_field}=0"
            )
        return toy
    source = sources.get_source(data, split)
    name = sources.canonical_name(data.dataset)
    per_example = preprocess.preprocess_fn(name, data)
    source.check_against(data, per_example, num_classes, classes_field)  # before any write
    if augment is None:
        augment = sources.canonical_split(split) == "train"
    dequantize = (
        data.uniform_dequantization if uniform_dequantization is None else uniform_dequantization
    )
    return Dataset(
        source,
        per_example,
        scaler,
        batch_size=batch_size,
        seed=seed,
        process_index=process_index,
        process_count=process_count,
        random_flip=bool(data.random_flip and augment),
        uniform_dequantization=bool(dequantize),
        name=data.dataset,
        notes=tuple(sources.choices(source, data, name)),
    )


def get_process_dataset(data: DataConfig, split: str, *, global_batch: int, seed: int, **kw):
    """This process's share of `split`: its rows of every global batch of `global_batch`."""
    import jax

    n = jax.process_count()
    if global_batch % n:
        raise ValueError(
            f"batch size {global_batch} must be divisible by the number of processes ({n})"
        )
    return get_dataset(
        data,
        split,
        batch_size=global_batch // n,
        seed=seed,
        process_index=jax.process_index(),
        process_count=n,
        **kw,
    )
