"""A walkthrough of score_sde, after the original colab: load a checkpoint, sample with PC and the
probability-flow ODE, compute bits/dim, inpaint.

    python examples/walkthrough.py                           # trains a tiny digits model first
    python examples/walkthrough.py --workdir=runs/digits     # a trained or converted image model

Without a model in --workdir (no config.json) it first trains a tiny DDPM++ on scikit-learn's 8x8
digits there (--steps steps: about 20 s on a laptop CPU; the samples look like blobs, not digits,
until a few thousand steps). It writes <workdir>/walkthrough.png (rows: PC samples, ODE samples,
test images, inpainting inputs, inpainted) and walkthrough.npz (the same arrays and the
bits/dim; samples as floats in [0, 1], images as uint8). The `# %%` lines are cells: VS Code and Jupyter (jupytext) run them one at a time.
"""

# %% Setup: flags (in a notebook the defaults apply).
from __future__ import annotations

import argparse
import os

import jax
import numpy as np

import score_sde
from score_sde import config as config_lib
from score_sde import controllable
from score_sde.data import datasets, preprocess
from score_sde.run import modes
from score_sde.store import fs, image_io

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--workdir", default="runs/walkthrough", help="a trained image model's run")
parser.add_argument("--steps", type=int, default=300, help="training steps of the tiny model")
parser.add_argument("--num", type=int, default=16, help="samples, test images and inpaintings")
parser.add_argument("--seed", type=int, default=0)
args, _ = parser.parse_known_args()  # a notebook kernel passes flags of its own
key = jax.random.key(args.seed)

# %% A model to play with: train a tiny one when --workdir has none.
# The shipped digits config with command-line style overrides: a ~30k-parameter network, 50
# sampler steps, loose ODE tolerances (bits/dim within ~0.01). The launcher's in-process entry,
# modes.run(mode, config, workdir), is what `score-sde --mode=train` runs.
TINY = {
    "model.nf": "8",
    "model.ch_mult": "(1, 2)",
    "model.num_res_blocks": "1",
    "model.attn_resolutions": "()",
    "model.num_scales": "50",
    "training.n_iters": str(args.steps),
    "training.n_jitted_steps": str(min(50, args.steps)),
    "training.log_freq": str(max(1, args.steps // 3)),
    "training.eval_freq": str(args.steps),
    "training.snapshot_freq": str(args.steps),
    "training.snapshot_sampling": "False",
    "eval.rtol": "1e-3",
    "eval.atol": "1e-3",
}
if not fs.path(os.path.join(args.workdir, "config.json")).is_file():
    print(f"no model in {args.workdir}: training a tiny digits model for {args.steps} steps")
    modes.run("train", config_lib.load("digits/ddpmpp", TINY), args.workdir)

# %% Load it: config.json and the EMA parameters of the newest checkpoint.
model = score_sde.load(args.workdir)
cfg, shape = model.cfg, model.exp.shape
if len(shape) != 3:
    raise SystemExit(
        f"{args.workdir}: this walkthrough is for image models, not {cfg.data.dataset}"
    )
print(f"loaded {cfg.data.dataset} {cfg.model.name} at step {model.step}; images {shape}")

# %% Sample with the run's sampler (PC: predictor-corrector) and with the probability-flow ODE.
# Samples are images in [0, 1]; NFE counts score evaluations (fixed for PC, adaptive for the ODE).
k_pc, k_ode, k_bpd, k_inpaint = jax.random.split(key, 4)
pc, nfe_pc = model.sample_with_nfe(k_pc, args.num)
ode, nfe_ode = model.sample_with_nfe(k_ode, args.num, method="ode")
s = cfg.sampling
print(f"PC ({s.predictor} + {s.corrector}) samples {pc.shape}, NFE {nfe_pc}")
print(f"ODE samples {ode.shape}, NFE {nfe_ode}")

# %% Bits/dim of test images: log p(x) through the probability-flow ODE, 8-bit pixels uniformly
# dequantized. Test images come from the run's dataset config, mapped back to uint8 pixels.
test = datasets.get_dataset(cfg.data, "test", batch_size=args.num, seed=args.seed, augment=False)
pixels = image_io.to_uint8(preprocess.to_images(test.batch(0)["x"], cfg.data))
bpd = model.bits_per_dim(k_bpd, pixels)
print(f"bits/dim of {len(pixels)} test images: {bpd.mean():.3f} (+- {bpd.std():.3f})")

# %% Inpaint: keep the top half of each test image (mask = 1) and sample the rest. A score is a
# function score_fn(x, t) of model-space images: the controllable samplers take any one.
mask = controllable.named_mask("keep_top", shape)  # [H, W, 1]
inpaint = controllable.get_pc_inpainter(
    model.exp.sde,
    (len(pixels), *shape),
    s.predictor,
    s.corrector,
    snr=s.snr,
    n_steps=s.n_steps_each,
    denoise=s.noise_removal,
)
y = preprocess.get_data_scaler(cfg.data)(pixels / 255.0)  # model space
x, nfe = jax.jit(lambda k, y: inpaint(k, model.score_fn, y, mask))(k_inpaint, y)
inpainted = image_io.to_uint8(preprocess.to_images(np.asarray(x), cfg.data))
kept = (inpainted == pixels)[:, mask[..., 0] == 1].all()
print(f"inpainted {inpainted.shape}, NFE {nfe}; known pixels kept exactly: {bool(kept)}")

# %% Save one picture: a row per kind, pixels enlarged for small images.
shown = np.where(mask == 1, pixels, 128).astype(np.uint8)  # unknown region gray
rows = [image_io.to_uint8(pc), image_io.to_uint8(ode), pixels, shown, inpainted]
grid = image_io.upscale(image_io.make_grid(np.concatenate(rows), nrow=args.num))
png = os.path.join(args.workdir, "walkthrough.png")
npz = os.path.join(args.workdir, "walkthrough.npz")
image_io.save_png(png, grid)
fs.save_npz(npz, pc=pc, ode=ode, test=pixels, mask=mask, inpainted=inpainted, bpd=bpd)
print(f"rows: PC samples, ODE samples, test images, inpainting inputs, inpainted -> {png}")
print(f"arrays -> {npz}")
