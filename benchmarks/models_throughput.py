"""Forward and train-step throughput (img/s) of the published CIFAR-10 networks at batch 128.

    python benchmarks/models_throughput.py [--config configs/vp/cifar10_ddpmpp_continuous.py]
        [--dtype float32|bfloat16] [--batch 128] [--steps 20]

Default: DDPM++ cont. (VP) and NCSN++ cont. (VE), the two rows of FIGURES.md's PyTorch table
(787 / 720 train img/s, 3,243 / 2,420 forward img/s on one H100, fp32). One train step = the real
library step (DSM loss of the config's SDE, Adam, grad clip, EMA) on one device; one forward = one
score evaluation. Prints one JSON line per config. Meant for a GPU; not run in the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

DEFAULT = ("configs/vp/cifar10_ddpmpp_continuous.py", "configs/ve/cifar10_ncsnpp_continuous.py")


def _time(fn, steps: int) -> float:
    out = fn()
    jax.block_until_ready(out)  # compile + warm up
    t = time.perf_counter()
    for _ in range(steps):
        out = fn()
    jax.block_until_ready(out)
    return (time.perf_counter() - t) / steps


def bench(path: str, dtype: str, batch: int, steps: int) -> dict:
    from score_sde import config, parallel
    from score_sde.run import experiment

    cfg = config.load(
        os.path.join(ROOT, path), {"model.dtype": dtype, "training.batch_size": str(batch)}
    )
    exp = experiment.build(cfg, parallel.make_mesh(1))
    state = exp.new_state()
    x = jax.random.uniform(jax.random.key(0), (batch, *exp.shape))
    t = jnp.full((batch,), 0.5)
    score = jax.jit(exp.score_apply)
    fwd = _time(lambda: score(state.params, x, t), steps)
    steps_fn = exp.train_steps()
    batches = [{"x": np.asarray(x)}]
    holder = [state]

    def one():
        holder[0], m = steps_fn(holder[0], batches)
        return m["loss"]

    step = _time(one, steps)
    return {
        "config": path,
        "dtype": dtype,
        "batch": batch,
        "device": str(jax.devices()[0]),
        "forward_img_s": round(batch / fwd, 1),
        "train_step_img_s": round(batch / step, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", action="append")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    for path in args.config or DEFAULT:
        print(json.dumps(bench(path, args.dtype, args.batch, args.steps)), flush=True)


if __name__ == "__main__":
    main()
