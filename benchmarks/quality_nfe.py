"""Sample quality against NFE, per sampler, for one trained model (or the exact-score toy).

    python benchmarks/quality_nfe.py --workdir runs/digits_ddpmpp [--samples 512] [--out DIR]
    python benchmarks/quality_nfe.py --train --workdir runs/digits_ddpmpp   # train it first
    python benchmarks/quality_nfe.py --train --config configs/digits/flow.py --workdir runs/digits_flow
    python benchmarks/quality_nfe.py --train --config configs/digits/consistency.py \
        --workdir runs/digits_ct --grid consistency
    python benchmarks/quality_nfe.py --train --config configs/digits/uvit.py \
        --workdir runs/digits_uvit --grid rows --out runs/quality_nfe_uvit     # likewise dit.py
    python benchmarks/quality_nfe.py --toy [--samples 4096]                 # no training (CPU)

Every cell of GRID, (sampler, budget), draws `--samples` samples in one sampler call with the same
key (the same prior draws for every deterministic sampler) and reports the NFE the sampler counts:
PC with reverse diffusion and no corrector (NFE = N) or one Langevin step (2N), the adaptive
probability-flow ODE (Tsit5 at rtol = atol = tol), EDM's Heun (2 (N - 1) + 1), DPM-Solver++ 2M (N)
and 3M (N + 1), DDIM (N). The sampler settings not varied here (snr, noise removal, eps) are the
run's config.sampling.

Quality, against data the model never saw:
- an image work directory: the Fréchet distance between Gaussian fits (score_sde.evaluation.fid)
  of the raw pixels in [0, 1] of the samples and of the test split (there is no Inception network
  for 8x8 digits); on the digits also the mean max-probability of a logistic-regression classifier
  fit on the train split (`confidence` of benchmarks/edm_vs_dsm_digits.py). The floor row is the
  test split against the train split (and the classifier's confidence on the test digits).
- `--toy`: the sliced Wasserstein-2 distance to as many samples of the known 2-D mixture (that of
  benchmarks/fast_samplers.py) under the VP SDE with its exact score; the floor row is that
  distance between two independent samples of the mixture (the Monte-Carlo floor).

Prints a markdown table; writes quality_nfe_<name>.json and .png (distance against NFE, log-log,
one line per sampler, the floor dashed) to --out.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import sys
import time
from collections.abc import Callable

import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # the configs/ package and the sibling benchmarks

from benchmarks.edm_vs_dsm_digits import confidence, judge  # noqa: E402
from benchmarks.fast_samplers import mixture  # noqa: E402
from score_sde import fast_sampling, sampling  # noqa: E402
from score_sde import sde as sde_lib  # noqa: E402
from score_sde.evaluation import fid  # noqa: E402

LABELS = {
    "pc": "PC reverse diffusion",
    "pc_langevin": "PC reverse diffusion + Langevin",
    "ode": "ODE (Tsit5)",
    "edm_heun": "EDM Heun",
    "dpmpp_2m": "DPM-Solver++ 2M",
    "dpmpp_3m": "DPM-Solver++ 3M",
    "ddim": "DDIM",  # on a flow path: Euler's method on the velocity ('euler')
    "consistency": "Consistency (1 or 2 jumps)",
}
# (method, budget): N noise levels for PC, the tolerance for the ODE, num_steps for the rest.
GRIDS = {
    "full": (  # 1,200 NFE in all: 3-5 min for 512 digits on 2 shared CPU cores
        *[("pc", n) for n in (25, 50, 100, 200)],
        *[("pc_langevin", n) for n in (25, 50, 100)],
        *[("ode", tol) for tol in (1e-1, 1e-2, 1e-3)],
        *[("edm_heun", n) for n in (4, 6, 10, 18)],
        *[("dpmpp_2m", n) for n in (5, 10, 20)],
        *[("dpmpp_3m", n) for n in (5, 10, 20)],
        *[("ddim", n) for n in (5, 10, 20, 50)],
    ),
    "consistency": (("consistency", 1), ("consistency", 2)),  # a consistency model's samplers
    "rows": (  # 309 NFE: the README's rows for other backbones, each sampler near its plateau
        ("pc", 100),
        ("ode", 1e-2),
        *[("edm_heun", n) for n in (6, 10, 18)],
        *[("dpmpp_2m", n) for n in (5, 10, 20)],
        *[("ddim", n) for n in (5, 10, 20)],
    ),
    "small": (  # the test's: two budgets per sampler
        *[("pc", n) for n in (25, 200)],
        *[("pc_langevin", n) for n in (25, 100)],
        *[("ode", tol) for tol in (1e-1, 1e-4)],
        *[("edm_heun", n) for n in (4, 18)],
        *[("dpmpp_2m", n) for n in (5, 20)],
        *[("dpmpp_3m", n) for n in (5, 20)],
        *[("ddim", n) for n in (5, 50)],
    ),
}


@dataclasses.dataclass(frozen=True)
class Settings:
    """What every sampler shares: config.sampling's snr, noise_removal and eps."""

    snr: float = 0.16
    denoise: bool = True
    eps: float = 1e-3


def make_sampler(
    sde: sde_lib.SDE,
    shape: tuple[int, ...],
    method: str,
    budget: float,
    settings: Settings,
    sharding=None,
):
    """`sampler(key, score_fn) -> (x [shape], nfe)` of one GRID cell."""
    s = settings
    match method:
        case "pc" | "pc_langevin":
            return sampling.get_pc_sampler(
                dataclasses.replace(sde, N=int(budget)),
                shape,
                "reverse_diffusion",
                "langevin" if method == "pc_langevin" else "none",
                snr=s.snr,
                denoise=s.denoise,
                eps=s.eps,
                sharding=sharding,
            )
        case "ode":
            return sampling.get_ode_sampler(
                sde, shape, rtol=budget, atol=budget, eps=s.eps, denoise=s.denoise,
                sharding=sharding,
            )  # fmt: skip
        case m if m in fast_sampling.METHODS:
            return fast_sampling.get_sampler(
                sde, shape, method, num_steps=int(budget), eps=s.eps, denoise=s.denoise,
                sharding=sharding,
            )  # fmt: skip
    raise ValueError(f"unknown sampler {method!r}; valid names: {', '.join(LABELS)}")


def draw(sampler, score_of: Callable, params, key: jax.Array):
    """(x host numpy, nfe, compile seconds, sampling seconds) of `sampler` with the score
    `score_of(params)`, compiled once (params are an argument, not constants)."""
    fn = jax.jit(lambda p, k: sampler(k, score_of(p)))
    t0 = time.perf_counter()
    compiled = fn.lower(params, key).compile()
    t1 = time.perf_counter()
    x, nfe = jax.block_until_ready(compiled(params, key))
    t2 = time.perf_counter()
    return np.asarray(x, np.float64), int(nfe), t1 - t0, t2 - t1


def sliced_wasserstein(x, y, *, num_projections: int = 256, seed: int = 0) -> float:
    """Sliced Wasserstein-2 distance between point sets x, y [N, D] (the same N):
    sqrt(E_theta W_2^2(theta.x, theta.y)) over `num_projections` random unit directions; in 1-D
    W_2^2 is the mean squared difference of the sorted projections."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.ndim != 2 or x.shape != y.shape:
        raise ValueError(f"x and y must be [N, D] of one shape, got {x.shape} and {y.shape}")
    theta = np.random.default_rng(seed).normal(size=(x.shape[1], num_projections))
    theta /= np.linalg.norm(theta, axis=0)
    px, py = np.sort(x @ theta, axis=0), np.sort(y @ theta, axis=0)
    return float(np.sqrt(np.mean((px - py) ** 2)))


def measure(
    sde: sde_lib.SDE,
    shape: tuple[int, ...],
    score_of: Callable,
    params,
    metrics: Callable[[np.ndarray], dict],
    grid,
    key: jax.Array,
    settings: Settings,
    sharding=None,
) -> list[dict]:
    """One row per GRID cell: sampler, method, budget, nfe, the `metrics(x)` of its samples x
    [shape] and the seconds it took; printed as one JSON line each."""
    rows = []
    for method, budget in grid:
        sampler = make_sampler(sde, shape, method, budget, settings, sharding)
        x, nfe, compile_s, sample_s = draw(sampler, score_of, params, key)
        row = {
            "sampler": LABELS.get(method, method),
            "method": method,
            "budget": budget,
            "nfe": nfe,
        }
        row.update(metrics(x))
        row.update(compile_s=round(compile_s, 2), sample_s=round(sample_s, 2))
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def toy(num: int, grid, key: jax.Array) -> dict:
    """The exact-score 2-D mixture under the VP SDE: sliced W2 to `num` mixture samples."""
    gmm, sde = mixture(), sde_lib.VPSDE()
    reference = np.asarray(gmm.sample(jax.random.key(1), num))
    floor = sliced_wasserstein(np.asarray(gmm.sample(jax.random.key(2), num)), reference)
    rows = measure(
        sde, (num, 2), lambda g: g.score_fn(sde), gmm,
        lambda x: {"distance": sliced_wasserstein(x, reference)}, grid, key, Settings(),
    )  # fmt: skip
    return {
        "name": "toy",
        "setting": "2-D Gaussian mixture (benchmarks/fast_samplers.py), VP SDE, exact score",
        "samples": num,
        "columns": {"distance": "sliced W2 to the mixture"},
        "floor": {"distance": floor},
        "floor_label": "mixture vs mixture (Monte-Carlo floor)",
        "rows": rows,
    }


def real_images(data, split: str) -> np.ndarray:
    """Every image of `split` in [0, 1], [N, H, W, C] (no dequantization, no flip)."""
    from score_sde.data import datasets, preprocess

    ds = datasets.get_dataset(
        data, split, batch_size=512, seed=0, uniform_dequantization=False, augment=False
    )
    parts = [preprocess.to_images(b["x"][b["mask"]], data) for b in ds.epoch()]
    return np.concatenate(parts).astype(np.float64)


def image_metrics(data):
    """(metrics(x [N, H, W, C] model space) -> dict, floor dict): the pixel Fréchet distance to
    the test split and, on the digits, the classifier's confidence. The floor is the test split's
    distance to the train split and its confidence (the classifier is fit on the train split, so
    the test digits are the held-out reference for both)."""
    from score_sde.data import preprocess

    test, train = real_images(data, "test"), real_images(data, "train")
    flat = lambda im: im.reshape(len(im), -1)
    stats = fid.compute_statistics(flat(test))
    clf = judge() if data.dataset == "digits" else None

    def of_images(im):  # im [N, H, W, C] in [0, 1]
        out = {"distance": fid.frechet_distance(*fid.compute_statistics(flat(im)), *stats)}
        if clf is not None:
            out["confidence"] = confidence(clf, 2.0 * im - 1.0)  # takes [-1, 1]
        return out

    floor = {"distance": of_images(train)["distance"]}
    if clf is not None:
        floor["confidence"] = confidence(clf, 2.0 * test - 1.0)
    return (lambda x: of_images(np.asarray(preprocess.to_images(x, data)))), floor


def model(workdir: str, num: int, grid, key: jax.Array) -> dict:
    """The trained model of `workdir` (score_sde.load: config.json + newest checkpoint, EMA)."""
    import score_sde
    from score_sde import parallel

    m = score_sde.load(workdir)
    exp, cfg = m.exp, m.cfg
    if len(exp.shape) != 3:
        raise ValueError(
            f"--workdir {workdir} holds a {cfg.data.dataset!r} model of vectors "
            f"{list(exp.shape)}; this benchmark scores images (use --toy for the 2-D mixture)"
        )
    devices = exp.mesh.devices.size
    if num % devices:
        raise ValueError(f"--samples ({num}) must be divisible by the devices ({devices})")
    metrics, floor = image_metrics(cfg.data)
    s = cfg.sampling
    rows = measure(
        exp.sde, (num, *exp.shape), exp.score_fn, m.params, metrics, grid, key,
        Settings(snr=s.snr, denoise=s.noise_removal, eps=s.eps),
        sharding=parallel.batch_sharding(exp.mesh),
    )  # fmt: skip
    columns = {"distance": "FD pixels"}
    if "confidence" in floor:
        columns["confidence"] = "classifier confidence"
    return {
        "name": cfg.data.dataset + ("" if cfg.training.sde == "vpsde" else f"_{cfg.training.sde}"),
        "setting": f"{os.path.basename(os.path.normpath(workdir))} at step {m.step} (EMA), "
        f"{cfg.training.sde}",
        "samples": num,
        "columns": columns,
        "floor": floor,
        "floor_label": "real test split (FD: to the train split)",
        "rows": rows,
    }


def markdown(result: dict) -> str:
    """The table: one row per (sampler, NFE), the floor first."""
    cols = result["columns"]
    fmt = lambda k, v: f"{v:.3f}" if k == "confidence" else f"{v:.4g}"
    head = f"| sampler | budget | NFE | {' | '.join(cols.values())} | seconds |"
    lines = [head, "|" + "---|" * (len(cols) + 4)]
    floor = " | ".join(fmt(k, result["floor"][k]) for k in cols)
    lines.append(f"| {result['floor_label']} | — | — | {floor} | — |")
    for r in result["rows"]:
        budget = f"tol {r['budget']:g}" if r["method"] == "ode" else f"N={r['budget']}"
        values = " | ".join(fmt(k, r[k]) for k in cols)
        lines.append(f"| {r['sampler']} | {budget} | {r['nfe']} | {values} | {r['sample_s']} |")
    return "\n".join(lines) + f"\n\n{result['samples']} samples per row; {result['setting']}."


def plot(result: dict, path: str) -> None:
    """One panel per column: the value against NFE (log x; log y for distances), one line per
    sampler, the floor dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = result["columns"]
    fig, axes = plt.subplots(1, len(cols), figsize=(5.5 * len(cols), 4.2), squeeze=False)
    for ax, (key, title) in zip(axes[0], cols.items(), strict=True):
        for method, label in LABELS.items():
            rows = sorted(
                (r for r in result["rows"] if r["method"] == method), key=lambda r: r["nfe"]
            )
            if rows:
                ax.plot([r["nfe"] for r in rows], [r[key] for r in rows], "o-", label=label, ms=4)
        ax.axhline(result["floor"][key], color="k", ls="--", lw=1, label=result["floor_label"])
        ax.set_xscale("log")
        if key != "confidence":
            ax.set_yscale("log")
        ax.set_xlabel("NFE (score evaluations)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{result['setting']}; {result['samples']} samples", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(result: dict, out: str) -> tuple[str, str]:
    """quality_nfe_<name>.json and .png under `out`; returns their paths."""
    os.makedirs(out, exist_ok=True)
    stem = os.path.join(out, f"quality_nfe_{result['name'].replace('/', '_')}")
    with open(stem + ".json", "w") as f:
        json.dump(result, f, indent=1)
    plot(result, stem + ".png")
    return stem + ".json", stem + ".png"


def train(workdir: str, steps: int | None, config_file: str = "configs/digits/ddpmpp.py") -> None:
    """`config_file` trained into `workdir` (its steps, or `steps`); resumes (or does nothing) if
    `workdir` already holds its checkpoints."""
    from score_sde import config
    from score_sde.run import modes

    c = config.load_file(os.path.join(ROOT, config_file))
    if steps:
        c.training.n_iters = c.training.snapshot_freq = steps
    modes.run("train", c, workdir, stream=io.StringIO())


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", help="a trained run: config.json + checkpoints")
    p.add_argument("--train", action="store_true", help="train --config first")
    p.add_argument(
        "--config", default="configs/digits/ddpmpp.py", help="with --train: the config file"
    )
    p.add_argument("--train_steps", type=int, default=0, help="with --train (0: the config's)")
    p.add_argument("--toy", action="store_true", help="the exact-score 2-D mixture instead")
    p.add_argument(
        "--samples", type=int, default=0, help="per (sampler, NFE) cell (0: 512; --toy 4096)"
    )
    p.add_argument("--grid", default="full", choices=sorted(GRIDS), help="the cells (GRIDS)")
    p.add_argument("--seed", type=int, default=0, help="the sampler key: jax.random.key(seed)")
    p.add_argument(
        "--out", default=os.path.join(ROOT, "runs", "quality_nfe"), help="JSON + PNG folder"
    )
    args = p.parse_args(argv)
    if args.toy == bool(args.workdir):
        p.error("give --workdir W (with --train to train it first) or --toy")
    key, grid = jax.random.key(args.seed), GRIDS[args.grid]
    num = args.samples or (4096 if args.toy else 512)
    if args.toy:
        result = toy(num, grid, key)
    else:
        if args.train:
            t0 = time.perf_counter()
            train(args.workdir, args.train_steps, args.config)
            print(f"trained in {time.perf_counter() - t0:.0f} s", flush=True)
        result = model(args.workdir, num, grid, key)
    result["devices"] = f"{jax.device_count()} x {jax.devices()[0].device_kind}"
    paths = write(result, args.out)
    print("\n" + markdown(result) + f"\n\nwrote {', '.join(paths)}")
    return result


if __name__ == "__main__":
    main()
