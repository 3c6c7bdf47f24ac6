"""The launcher's train-step dispatch against a plain `jit(train_step)`, interleaved.

    python benchmarks/dispatch.py [--config configs/vp/cifar10_ddpmpp_continuous.py] [--nf 32]
        [--batch 8] [--rounds 5] [--k 1]

Three ways to run k optimizer steps of the same DDPM++ (width `--nf`) on the same batch:
- plain: k calls of jit(train_step) with the state donated (the reference);
- launcher: what train mode dispatches (`Experiment.train_steps()`: on CPU k calls of one jitted
  step, on accelerators one jit(lax.scan));
- scan: one jit(lax.scan(train_step)) over k steps, forced.
Timed A, B, C, A, B, C, ... (`--rounds` times, after compilation); prints one JSON line with the
device, seconds per step (median) and the ratios launcher / plain and scan / plain.

Why scan is slow on CPU: XLA:CPU canonicalizes convolution dimension orders only in the top-level
computation. Inside a scan's loop body the backward convolutions keep the transposed orders
autodiff gives them (input gradients `b01f_01oi`, weight gradients `f01b_i01o->01bf`), fall off
the Eigen fast path and run on the naive loop emitter: ~10x slower per step.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # a script run from anywhere: the configs/ package


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="configs/vp/cifar10_ddpmpp_continuous.py")
    parser.add_argument("--nf", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--k", type=int, default=1, help="steps per dispatch")
    args = parser.parse_args()

    from score_sde import config, parallel
    from score_sde.run import experiment, train

    cfg = config.load(
        os.path.join(ROOT, args.config),
        {"model.nf": str(args.nf), "training.batch_size": str(args.batch)},
    )
    exp = experiment.build(cfg, parallel.make_mesh(1))
    loss_fn = exp.loss_fn(train=True)
    x = np.asarray(jax.random.uniform(jax.random.key(0), (args.batch, *exp.shape)))
    batches = [{"x": x}] * args.k
    rate = cfg.model.ema_rate

    plain_step = jax.jit(
        lambda s, b: train.train_step(s, b, loss_fn=loss_fn, tx=exp.tx, ema_rate=rate),
        donate_argnums=0,
    )

    def plain(state):
        for b in batches:
            state, _ = plain_step(state, b)  # host batch, transferred by the call
        return state

    launcher_steps = exp.train_steps()
    scan_steps = train.make_train_steps(loss_fn, exp.tx, rate, exp.mesh, scan=True)
    runs = {
        "plain": plain,
        "launcher": lambda s: launcher_steps(s, batches)[0],
        "scan": lambda s: scan_steps(s, batches)[0],
    }
    states = {name: exp.new_state() for name in runs}
    for name, fn in runs.items():  # compile and warm up
        states[name] = jax.block_until_ready(fn(states[name]))
    times = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, fn in runs.items():
            t = time.perf_counter()
            states[name] = jax.block_until_ready(fn(states[name]))
            times[name].append((time.perf_counter() - t) / args.k)
    med = {name: statistics.median(v) for name, v in times.items()}
    print(
        json.dumps(
            {
                "device": jax.devices()[0].device_kind,
                "backend": jax.default_backend(),
                "config": args.config,
                "nf": args.nf,
                "batch": args.batch,
                "steps_per_dispatch": args.k,
                "launcher_scans": train.scan_by_default(),
                "s_per_step": {k: round(v, 4) for k, v in med.items()},
                "launcher_over_plain": round(med["launcher"] / med["plain"], 3),
                "scan_over_plain": round(med["scan"] / med["plain"], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
