"""Autoguidance on the digits: a DDPM++ guided by a smaller, shorter-trained DDPM++ of the same data
and SDE, against the unguided model at the same sampler and number of steps, over sampler seeds.

    python benchmarks/autoguidance_digits.py --train    # trains both runs first, then measures
    python benchmarks/autoguidance_digits.py --workdir runs/digits_ddpmpp \
        --guide runs/digits_ddpmpp_guide [--weights 1.5 2 3] [--seeds 5] [--samples 512]

--train trains the main model (configs/digits/ddpmpp.py, its 2,000 steps of batch 64) into
--workdir and the guide (the same config with --guide_nf channels, 16 -> 8 by default, and
--guide_steps steps, 300 by default: EDM2's "smaller and shorter-trained") into --guide; a work
directory that already holds its checkpoints is reused as it is.

The guided model goes through the library's own path: score_sde.load(workdir, overrides=
{sampling.guide, sampling.guide_weight}) and Experiment.sampling_params, i.e. what
`score-sde sample --config.sampling.guide=... --config.sampling.guide_weight=w` samples from:
s_w = s_g + w (s - s_g); w = 1 is the main model alone. Every (weight, sampler cell) is compiled
once and drawn with the keys jax.random.key(seed), seed = 0 .. --seeds - 1, the same keys for
every weight (paired comparisons). NFE is the sampler's count of steps; a guided step evaluates
the main network and the (smaller) guide.

Quality, as benchmarks/quality_nfe.py: the pixel Fréchet distance of --samples samples to the 297
held-out test digits, and the mean max-probability of a logistic-regression classifier fit on the
train split. Prints one JSON line per (weight, cell, seed), then a markdown table of mean ± std over
the seeds and, per guided weight, the mean paired FD difference to w = 1 with its std; writes
autoguidance_digits.json and a sample grid (w = 1 beside the best weight, the first key) to --out.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time

import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # the configs/ package and the sibling benchmarks

from benchmarks.quality_nfe import LABELS, Settings, image_metrics, make_sampler  # noqa: E402

CELLS = (("dpmpp_2m", 10), ("dpmpp_2m", 20), ("pc", 100))  # (method, steps) as in quality_nfe


def train(workdir: str, nf: int | None = None, steps: int | None = None) -> None:
    """configs/digits/ddpmpp.py into `workdir`, with model.nf = nf and n_iters = steps if given;
    does nothing if `workdir` already holds its final checkpoint."""
    from score_sde import config
    from score_sde.run import modes

    c = config.load_file(os.path.join(ROOT, "configs/digits/ddpmpp.py"))
    if nf:
        c.model.nf = nf
    if steps:
        c.training.n_iters = c.training.snapshot_freq = steps
    modes.run("train", c, workdir, stream=io.StringIO())


def measure(workdir: str, guide: str, weights, cells, seeds: int, num: int, interval=None):
    """Rows {weight, method, steps, nfe, seed, distance, confidence, seconds} and the first
    key's samples [num, H, W, C] in [0, 1] per (weight, cell)."""
    import score_sde
    from score_sde import parallel
    from score_sde.data import preprocess

    rows, images, metrics, step = [], {}, None, {}
    for w in weights:
        overrides = {} if w == 1 else {"sampling.guide": guide, "sampling.guide_weight": str(w)}
        if interval and w != 1:
            overrides["sampling.guide_interval"] = str(tuple(interval))
        m = score_sde.load(workdir, overrides=overrides)
        exp, cfg = m.exp, m.cfg
        params = exp.sampling_params(m.params)  # Guided(model, guide) when w != 1
        step["model"] = m.step
        if w != 1:
            size = sum(leaf.size for leaf in jax.tree.leaves(params.guide))
            step["guide"] = f"{size:,} params", score_sde.load(guide).step
        if metrics is None:
            metrics, floor = image_metrics(cfg.data)
        s = cfg.sampling
        settings = Settings(snr=s.snr, denoise=s.noise_removal, eps=s.eps)
        for method, budget in cells:
            sampler = make_sampler(
                exp.sde, (num, *exp.shape), method, budget, settings,
                parallel.batch_sharding(exp.mesh),
            )  # fmt: skip
            fn = jax.jit(lambda p, k, sampler=sampler, exp=exp: sampler(k, exp.score_fn(p)))
            compiled = fn.lower(params, jax.random.key(0)).compile()
            for seed in range(seeds):
                t0 = time.perf_counter()
                x, nfe = jax.block_until_ready(compiled(params, jax.random.key(seed)))
                row = {"weight": w, "method": method, "steps": budget, "nfe": int(nfe)}
                row.update(seed=seed, **metrics(np.asarray(x, np.float64)))
                row["seconds"] = round(time.perf_counter() - t0, 2)
                rows.append(row)
                print(json.dumps(row), flush=True)
                if seed == 0:
                    images[w, method, budget] = np.asarray(preprocess.to_images(x, cfg.data))
    return rows, images, floor, step


def summary(rows, weights, cells) -> list[dict]:
    """Per (cell, weight): mean and std over seeds of FD and confidence, and the mean and std of
    the paired FD difference to w = 1 (same seed, same cell)."""
    out = []
    for method, budget in cells:
        base = {
            r["seed"]: r["distance"]
            for r in rows
            if r["weight"] == 1 and (r["method"], r["steps"]) == (method, budget)
        }
        for w in weights:
            sel = [
                r
                for r in rows
                if r["weight"] == w and (r["method"], r["steps"]) == (method, budget)
            ]
            fd = np.array([r["distance"] for r in sel])
            conf = np.array([r["confidence"] for r in sel])
            diff = np.array([r["distance"] - base[r["seed"]] for r in sel]) if base else fd * np.nan
            out.append({
                "method": method, "steps": budget, "nfe": sel[0]["nfe"], "weight": w,
                "fd_mean": fd.mean(), "fd_std": fd.std(ddof=1) if len(fd) > 1 else 0.0,
                "conf_mean": conf.mean(), "conf_std": conf.std(ddof=1) if len(conf) > 1 else 0.0,
                "diff_mean": diff.mean(), "diff_std": diff.std(ddof=1) if len(diff) > 1 else 0.0,
                "seeds": len(sel),
            })  # fmt: skip
    return out


def markdown(summ, floor) -> str:
    lines = [
        "| sampler | NFE | w | FD pixels | FD − FD(w = 1), paired | confidence |",
        "|---|---|---|---|---|---|",
        f"| real test split (FD: to the train split) | — | — | {floor['distance']:.3f} | — | "
        f"{floor['confidence']:.3f} |",
    ]
    for r in summ:
        diff = "—" if r["weight"] == 1 else f"{r['diff_mean']:+.3f} ± {r['diff_std']:.3f}"
        lines.append(
            f"| {LABELS[r['method']]} | {r['nfe']} | {r['weight']:g} | "
            f"{r['fd_mean']:.3f} ± {r['fd_std']:.3f} | {diff} | "
            f"{r['conf_mean']:.3f} ± {r['conf_std']:.3f} |"
        )
    return "\n".join(lines)


def grid_png(images, weights, cells, summ, path: str) -> None:
    """64 samples of the first key: w = 1 beside the weight of lowest mean FD, per cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(cells), 2, figsize=(6, 3.1 * len(cells)), squeeze=False)
    for i, (method, budget) in enumerate(cells):
        of = [r for r in summ if (r["method"], r["steps"]) == (method, budget) and r["weight"] != 1]
        best = min(of, key=lambda r: r["fd_mean"])["weight"] if of else 1
        for ax, w in zip(axes[i], (1, best), strict=True):
            im = images[w, method, budget][:64, ..., 0]
            im = np.pad(im, ((0, 0), (0, 1), (0, 1)), constant_values=0.5)  # a grey 1-px border
            h, w_ = im.shape[1:]
            tiles = im.reshape(8, 8, h, w_).transpose(0, 2, 1, 3).reshape(8 * h, 8 * w_)
            ax.imshow(tiles, cmap="gray", vmin=0, vmax=1)
            nfe = next(
                r["nfe"]
                for r in summ
                if (r["method"], r["steps"], r["weight"]) == (method, budget, w)
            )
            ax.set_title(f"{LABELS[method]}, {nfe} NFE, w = {w:g}", fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", default=os.path.join(ROOT, "runs", "digits_ddpmpp"))
    p.add_argument("--guide", default=os.path.join(ROOT, "runs", "digits_ddpmpp_guide"))
    p.add_argument("--train", action="store_true", help="train --workdir and --guide first")
    p.add_argument("--guide_nf", type=int, default=8, help="with --train: the guide's model.nf")
    p.add_argument("--guide_steps", type=int, default=300, help="with --train: the guide's steps")
    p.add_argument("--weights", type=float, nargs="+", default=[1.5, 2.0, 3.0])
    p.add_argument(
        "--cells",
        nargs="+",
        default=[f"{m}:{n}" for m, n in CELLS],
        help="method:steps sampler cells (quality_nfe's method names)",
    )
    p.add_argument(
        "--interval", type=float, nargs=2, help="t_lo t_hi: guide only there (default: all t)"
    )
    p.add_argument("--seeds", type=int, default=5, help="sampler keys 0 .. seeds - 1")
    p.add_argument("--samples", type=int, default=512, help="per (weight, cell, seed)")
    p.add_argument(
        "--out", default=os.path.join(ROOT, "runs", "autoguidance"), help="JSON + PNG folder"
    )
    args = p.parse_args(argv)
    if args.train:
        for workdir, kw in (
            (args.workdir, {}),
            (args.guide, {"nf": args.guide_nf, "steps": args.guide_steps}),
        ):
            t0 = time.perf_counter()
            train(workdir, **kw)
            print(f"trained {workdir} in {time.perf_counter() - t0:.0f} s", flush=True)
    weights = [1.0, *(w for w in args.weights if w != 1)]
    cells = tuple((c.split(":")[0], int(c.split(":")[1])) for c in args.cells)
    rows, images, floor, step = measure(
        args.workdir, args.guide, weights, cells, args.seeds, args.samples, args.interval
    )
    summ = summary(rows, weights, cells)
    os.makedirs(args.out, exist_ok=True)
    guided_by = (
        ""
        if "guide" not in step
        else f" guided by {args.guide} ({step['guide'][0]}, step {step['guide'][1]}, EMA)"
        + (f" for t in {tuple(args.interval)}" if args.interval else "")
    )
    result = {
        "setting": f"{args.workdir} at step {step['model']} (EMA)" + guided_by,
        "samples": args.samples,
        "seeds": args.seeds,
        "floor": floor,
        "rows": rows,
        "summary": summ,
        "devices": f"{jax.device_count()} x {jax.devices()[0].device_kind}",
    }
    path = os.path.join(args.out, "autoguidance_digits.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    png = os.path.join(args.out, "autoguidance_digits.png")
    grid_png(images, weights, cells, summ, png)
    print(
        "\n" + markdown(summ, floor) + f"\n\n{args.samples} samples per cell, mean ± std over "
        f"{args.seeds} sampler seeds; {result['setting']}.\n\nwrote {path}, {png}"
    )
    return result


if __name__ == "__main__":
    main()
