"""Long evaluations as rounds whose results are files, so that a killed job resumes.

    rounds = Rounds(directory, "pc", num_rounds, unit="img", per_round=1024, desc="sampling pc")
    for i, arrays in rounds.items(compute):   # compute(i) -> {name: np.ndarray}
        ...
    with rounds:                               # or one round at a time, in order
        arrays = rounds.get(i, lambda: compute(i))

Round i's arrays are written to `<directory>/<name>_<i>.npz` (atomically, process 0) as soon as
they are computed; a round whose file exists is read back instead of computed. Every process
follows process 0's view of which rounds are done (one all-gather per round), so the collective
work inside compute() stays in lockstep; resuming a multi-host job needs the directory on a file
system every host sees (as checkpoints do). Progress (process 0): a tqdm bar on a terminal,
periodic lines in a log (score_sde.store.progress).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator

import numpy as np

from score_sde import parallel
from score_sde.store import fs, progress


def fingerprint(*parts: object) -> str:
    """A short stable hash of the settings a round's result depends on (e.g. the config's eval,
    sampling and data sections): rounds of other settings live in other directories."""
    import hashlib
    import json

    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


class Rounds:
    """The rounds of one long evaluation under `directory`, each cached as `<name>_<i>.npz`: a
    context manager (the progress bar) whose `get(i, compute)` reads round i back or computes it;
    `resumed` counts the rounds read back."""

    def __init__(
        self,
        directory: str,
        name: str,
        num_rounds: int,
        *,
        desc: str,
        unit: str = "it",
        per_round: int = 1,
        total: int | None = None,
    ):
        self.directory, self.name, self.num_rounds = directory, name, num_rounds
        self.desc, self.unit, self.per_round = desc, unit, per_round
        self.total = total if total is not None else num_rounds * per_round
        self.resumed = 0

    def path(self, i: int) -> str:
        return os.path.join(self.directory, f"{self.name}_{i:05d}.npz")

    def _done(self, i: int) -> bool:
        main = parallel.is_main_process()
        exists = main and fs.path(self.path(i)).exists()
        return bool(parallel.max_over_processes(int(exists)))

    def __enter__(self) -> Rounds:
        main = parallel.is_main_process()
        if main:
            fs.path(self.directory).mkdir(parents=True, exist_ok=True)
        self._bar = progress.bar(self.total, self.desc, self.unit, enabled=main)
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.close()

    def get(self, i: int, compute: Callable[[], dict]) -> dict:
        """Round i's arrays: read back if its file exists (on process 0), else compute() and
        write them (process 0). Call in order, on every process."""
        if self._done(i):
            arrays = fs.load_npz(self.path(i))
            self.resumed += 1
        else:
            arrays = {k: np.asarray(v) for k, v in compute().items()}
            if parallel.is_main_process():
                fs.save_npz(self.path(i), **arrays)
        self._bar.update(min(self.per_round, self.total - self._bar.n))
        return arrays

    __call__ = get  # a Rounds is the `cache(i, compute)` that score_sde.evaluation takes

    def items(self, compute: Callable[[int], dict]) -> Iterator[tuple[int, dict]]:
        """(i, arrays) for every round, computing only the unfinished ones."""
        with self:
            for i in range(self.num_rounds):
                yield i, self.get(i, functools.partial(compute, i))
