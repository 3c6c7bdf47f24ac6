"""Host throughput of the data pipeline (no accelerator needed).

    python benchmarks/eval_data.py [--dataset npz|digits|cifar10] [--batch 128] [--steps 20]

'npz' makes a CIFAR-sized random uint8 array (50,000 x 32 x 32 x 3) in a temporary file; 'cifar10'
reads a prepared TFDS copy. Reports img/s of `Dataset.batch` (flip + uniform dequantization on)
and of `prefetch`. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np

from score_sde.config import DataConfig
from score_sde.data import datasets


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="npz")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = None
        if args.dataset == "npz":
            path = os.path.join(tmp, "x.npz")
            rng = np.random.default_rng(0)
            np.savez(path, x_train=rng.integers(0, 256, (50_000, 32, 32, 3), np.uint8))
        data = DataConfig(
            dataset=args.dataset,
            image_size=32,
            num_channels=3,
            centered=True,
            random_flip=True,
            uniform_dequantization=True,
            path=path,
        )
        ds = datasets.get_dataset(data, "train", batch_size=args.batch, seed=0)
        ds.batch(0)
        t0 = time.perf_counter()
        for step in range(args.steps):
            ds.batch(step)
        plain = args.steps * args.batch / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for _ in datasets.prefetch(ds, range(args.steps), buffer=4):
            time.sleep(0.0)
        pre = args.steps * args.batch / (time.perf_counter() - t0)
    print(
        json.dumps(
            {
                "dataset": args.dataset,
                "batch": args.batch,
                "batch_img_per_s": round(plain),
                "prefetch_img_per_s": round(pre),
            }
        )
    )


if __name__ == "__main__":
    main()
