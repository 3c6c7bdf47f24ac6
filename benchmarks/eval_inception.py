"""Throughput of the FID Inception features and the cost of 50k-sample statistics.

    python benchmarks/eval_inception.py [--batch 500] [--steps 20] [--size 32] [--weights PATH]

Uses the converted weights when present, random weights otherwise (same speed). Reports img/s of
`get_inception_fn` on every local device (data parallel over a ('data',) mesh, images of
`--size` resized to 299), the time to gather 50k features, and the float64 FID/IS/KID time on
50k x 2048 activations. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from score_sde.evaluation import evaluator, fid, inception


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=500, help="global batch")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--num_samples", type=int, default=50_000)
    parser.add_argument("--weights", default=None)
    args = parser.parse_args()

    path = inception.weights_path(args.weights)
    real = os.path.isfile(path)
    model = (
        inception.load_inception(path)
        if real
        else inception.model_from_flat(inception.random_flat_weights(0))
    )
    mesh = Mesh(np.array(jax.devices()), ("data",))
    fn = evaluator.get_inception_fn(model, mesh=mesh)
    sharding = NamedSharding(mesh, P("data"))
    images = jax.device_put(
        np.random.default_rng(0).random((args.batch, args.size, args.size, 3), np.float32), sharding
    )
    t0 = time.perf_counter()
    jax.block_until_ready(fn(images))
    compile_s = time.perf_counter() - t0
    acc = evaluator.FeatureAccumulator()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        out = fn(images)
        acc.add(out)  # includes the device -> host transfer, as in the eval loop
    elapsed = time.perf_counter() - t0
    img_s = args.steps * args.batch / elapsed

    rng = np.random.default_rng(1)
    pool = np.abs(rng.standard_normal((args.num_samples, 2048))).astype(np.float32)
    logits = rng.standard_normal((args.num_samples, 1008)).astype(np.float32)
    t0 = time.perf_counter()
    mu, sigma = fid.compute_statistics(pool)
    stats_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    fid_value = fid.frechet_distance(mu, sigma, mu + 0.01, sigma)
    fid_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    fid.inception_score(logits)
    is_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    fid.kernel_inception_distance(pool, pool[::-1], num_subsets=100, subset_size=1000)
    kid_s = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "device": str(jax.devices()[0].device_kind),
                "num_devices": len(jax.devices()),
                "real_weights": real,
                "batch": args.batch,
                "input_size": args.size,
                "compile_s": round(compile_s, 2),
                "inception_img_per_s": round(img_s, 1),
                "features_50k_s": round(args.num_samples / img_s, 1),
                "mu_sigma_50k_s": round(stats_s, 2),
                "frechet_s": round(fid_s, 2),
                "inception_score_s": round(is_s, 2),
                "kid_100x1000_s": round(kid_s, 2),
                "fid_check": round(fid_value, 4),
            }
        )
    )


if __name__ == "__main__":
    main()
