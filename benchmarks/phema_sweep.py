"""Sample quality and likelihood against the EMA length, on the digits: EDM2's post-hoc EMA sweep,
with the bits/dim axis EDM2 does not report.

    python benchmarks/phema_sweep.py --train --workdir runs/digits_phema     # train, then sweep
    python benchmarks/phema_sweep.py --workdir runs/digits_phema --stds 0.02,0.05,0.1,0.2

--train trains configs/digits/ddpmpp.py (2,000 steps of batch 64) tracking the power-function
EMAs of config.training.phema_stds (0.05, 0.1), snapshotted every 100 steps (n_iters / 20). Each --stds width is
then reconstructed at the last step from those 40 snapshots (`python -m score_sde.phema`'s code,
into <workdir>/../<name>_sweep/std-<std>/) and measured, beside the run's own EMA
(config.model.ema_rate) and its raw parameters:
- FD pixels: the Fréchet distance between Gaussian fits of the raw 8x8 pixels of --samples
  samples (DPM-Solver++ 2M, 20 steps, one key for every row) and of the 297 test digits, and the
  digits classifier's mean confidence (benchmarks/quality_nfe.py's measures);
- bits/dim of --bpd_examples test digits (as 8-bit images, uniformly dequantized, one key for
  every row) through the probability-flow ODE at rtol = atol = 1e-5, with config.eval's
  Hutchinson trace estimate (one probe per digit).
Prints a markdown table (and the fitted profile's relative L2 error per width); writes
phema_sweep.json to --out.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import time

import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # the configs/ package and the sibling benchmarks

from benchmarks.quality_nfe import image_metrics, real_images  # noqa: E402

TRACKED = (0.05, 0.1)
SWEEP = "0.02,0.04,0.05,0.07,0.1,0.13,0.17,0.22"


def train(workdir: str, steps: int) -> None:
    """configs/digits/ddpmpp.py tracking TRACKED, snapshots every steps/20; resumes (or does
    nothing) when `workdir` holds its checkpoints."""
    from score_sde import config
    from score_sde.run import modes

    c = config.load_file(os.path.join(ROOT, "configs", "digits", "ddpmpp.py"))
    if steps:
        c.training.n_iters = c.training.snapshot_freq = steps
    c.training.phema_stds = TRACKED
    freq = max(1, c.training.n_iters // 20)  # snapshots land at dispatch ends: make them meet
    c.training.phema_freq = freq
    c.training.n_jitted_steps = math.gcd(c.training.n_jitted_steps, freq)
    c.training.snapshot_sampling = False
    modes.run("train", c, workdir, stream=io.StringIO())


def measure(model, metrics, key, samples: int, pixels: np.ndarray) -> dict:
    """FD, confidence (of `samples` DPM-Solver++ 2M samples) and bits/dim (of `pixels`)."""
    k_sample, k_bpd = jax.random.split(key)
    x = model.sample(k_sample, samples, "dpmpp_2m", num_steps=20)
    out = metrics(2.0 * x - 1.0 if model.cfg.data.centered else x)
    bpd = model.bits_per_dim(k_bpd, pixels, rtol=1e-5, atol=1e-5)
    out["bpd"] = float(np.mean(bpd))
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", required=True, help="a run trained with phema_stds")
    p.add_argument("--train", action="store_true", help="train the digits model into it first")
    p.add_argument("--train_steps", type=int, default=0, help="with --train (0: the config's)")
    p.add_argument("--stds", default=SWEEP, help="comma-separated EMA widths to reconstruct")
    p.add_argument("--samples", type=int, default=512, help="samples per row for FD")
    p.add_argument("--bpd_examples", type=int, default=128, help="test digits for bits/dim")
    p.add_argument("--seed", type=int, default=0, help="jax.random.key(seed) for every row")
    p.add_argument("--out", default=os.path.join(ROOT, "runs", "phema_sweep"), help="JSON folder")
    args = p.parse_args(argv)

    import dataclasses

    import score_sde
    from score_sde.run import posthoc_ema
    from score_sde.store.checkpoint import Checkpoints

    if args.train:
        t0 = time.perf_counter()
        train(args.workdir, args.train_steps)
        print(f"trained in {time.perf_counter() - t0:.0f} s", flush=True)
    stds = [float(s) for s in args.stds.split(",") if s.strip()]
    base = os.path.normpath(args.workdir)
    sweep_dir = base + "_sweep"
    plan = posthoc_ema.plan(args.workdir, stds, sweep_dir)  # refuses an existing sweep
    posthoc_ema.reconstruct(plan)

    run = score_sde.load(args.workdir)
    metrics, floor = image_metrics(run.cfg.data)
    test = real_images(run.cfg.data, "test")[: args.bpd_examples]
    pixels = np.round(test * 255).astype(np.uint8)
    key = jax.random.key(args.seed)
    rows = []
    for std, out, err in zip(plan.stds, plan.outs, plan.errors, strict=True):
        row = measure(score_sde.load(out), metrics, key, args.samples, pixels)
        rows.append({"ema": f"post-hoc std {std:g}", "profile_error": float(err), **row})
        print(rows[-1], flush=True)
    ema = f"the run's EMA (ema_rate {run.cfg.model.ema_rate:g})"
    rows.append({"ema": ema, **measure(run, metrics, key, args.samples, pixels)})
    with Checkpoints(args.workdir, read_only=True) as ckpts:
        raw = dataclasses.replace(run, params=ckpts.restore(run.exp.state_like()).params)
    rows.append(
        {"ema": "no EMA (raw parameters)", **measure(raw, metrics, key, args.samples, pixels)}
    )
    result = {
        "setting": f"{os.path.basename(base)} at step {plan.step}, tracked {TRACKED}, "
        f"{len(plan.snapshots)} snapshots",
        "samples": args.samples,
        "bpd_examples": len(pixels),
        "floor": floor,
        "rows": rows,
        "devices": f"{jax.device_count()} x {jax.devices()[0].device_kind}",
    }
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "phema_sweep.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    lines = [
        "| EMA | FD pixels | confidence | bits/dim | profile fit error |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        fit = f"{r['profile_error']:.2%}" if "profile_error" in r else "-"
        lines.append(
            f"| {r['ema']} | {r['distance']:.3f} | {r.get('confidence', float('nan')):.3f} | "
            f"{r['bpd']:.3f} | {fit} |"
        )
    print("\n".join(lines) + f"\n\nwrote {path}")
    return result


if __name__ == "__main__":
    main()
