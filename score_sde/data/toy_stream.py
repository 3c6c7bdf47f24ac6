"""The 2-D toys as a stream with `Dataset`'s interface (`batch(step)`, `epoch(batch_size)`):
fresh samples of `toy_data.sample_toy` every step, a pure function of (seed, step, process).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from score_sde.config import DataConfig

_TOY_EVAL_EXAMPLES = 10_000


class ToyDataset:
    """2-D toy distribution: fresh samples per step from `sample_toy(name, key, n)`.

    `batch(step)` draws from key(seed) folded with (step, process_index); `epoch` iterates a fixed
    set of `num_examples` samples drawn from key(seed) folded with the split.
    """

    notes: tuple[str, ...] = ()  # no data choices to say (datasets.Dataset.notes)

    def __init__(
        self,
        name: str,
        split: str,
        scaler: Callable,
        *,
        batch_size: int,
        seed: int,
        process_index: int = 0,
        process_count: int = 1,
        num_examples: int = _TOY_EVAL_EXAMPLES,
    ):
        if not 0 <= process_index < process_count:
            raise ValueError(
                f"process_index ({process_index}) must be in [0, process_count={process_count})"
            )
        self.name, self.split, self.scaler = name, split, scaler
        self.batch_size, self.seed = int(batch_size), int(seed)
        self.process_index, self.process_count = int(process_index), int(process_count)
        self.num_examples = int(num_examples)

    def check_against(self, data: DataConfig) -> None:
        """The toys are 2-D points: config.data.dim must be 2 and the name a known toy."""
        from score_sde.data import toy_data

        if self.name not in toy_data.TOY_NAMES:
            raise ValueError(
                f"config.data.dataset ({data.dataset!r}) is not a toy; use one of "
                + ", ".join(f"'toy/{n}'" for n in toy_data.TOY_NAMES)
            )
        if data.shape != (2,):
            field = (
                f"config.data.dim ({data.dim})"
                if data.dim is not None
                else f"config.data.image_size / num_channels ({data.shape})"
            )
            raise ValueError(
                f"{field} does not match dataset {data.dataset!r}, whose examples are 2-D "
                "points; set --config.data.dim=2"
            )

    def _sample(self, key, n):
        from score_sde.data import toy_data

        return np.asarray(toy_data.sample_toy(self.name, key, n), np.float32)

    def batch(self, step: int) -> dict[str, np.ndarray]:
        import jax

        key = jax.random.fold_in(jax.random.key(self.seed), 1)
        key = jax.random.fold_in(jax.random.fold_in(key, step), self.process_index)
        return {"x": self._sample(key, self.batch_size)}

    def num_batches(self, batch_size: int | None = None) -> int:
        g = (batch_size or self.batch_size) * self.process_count
        return -(-self.num_examples // g)

    def epoch(self, batch_size: int | None = None, *, repeat: int = 0):
        import jax

        b = batch_size or self.batch_size
        g = b * self.process_count
        split_id = {"train": 0, "test": 1, "eval": 1, "validation": 1}.get(self.split, 2)
        key = jax.random.fold_in(jax.random.fold_in(jax.random.key(self.seed), 2), split_id)
        data = self._sample(key, self.num_examples)
        for k in range(self.num_batches(b)):
            idx = np.arange(k * g + self.process_index * b, k * g + (self.process_index + 1) * b)
            mask = idx < self.num_examples
            yield {"x": data[np.where(mask, idx, 0)], "mask": mask}
