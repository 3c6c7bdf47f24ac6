"""The one sample writer: model-space samples -> what files hold and what the API returns.

    saved = sample_files.on_host(x, cfg.data)                        # uint8 images / points
    info = sample_files.provenance(cfg, step, "pc", nfe)                 # step, method, NFE, seed...
    sample_files.write(run, sample_files.stem(workdir, info), {"samples": saved, **info}, "64 samples")

Images are mapped from model space to [0, 1] and clipped (preprocess.to_images), then rounded to
uint8 for files; points stay as they are. (Denoising is the sampler's last step.)
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from score_sde import parallel
from score_sde.config import Config, DataConfig
from score_sde.data import preprocess
from score_sde.run.rounds import fingerprint
from score_sde.store import fs, image_io

if TYPE_CHECKING:
    from score_sde.run.opening import Run


def on_host(x: jax.Array | np.ndarray, data: DataConfig, *, uint8: bool = True) -> np.ndarray:
    """Samples x [N, ...] (a global array or numpy) -> numpy on every process: images
    [N, H, W, C] in [0, 1] (uint8 when `uint8`), points [N, D] unchanged."""
    x = np.asarray(parallel.to_host(x))
    if x.ndim != 4:
        return x
    images = preprocess.to_images(x, data)
    return image_io.to_uint8(images) if uint8 else images


def provenance(cfg: Config, step: int, method: str, nfe: int) -> dict:
    """What made a sample file: {step, method, num_steps, nfe, seed, config_hash}, the hash over
    every config section the samples depend on (same hash and seed: the same samples)."""
    c = cfg.to_dict()
    digest = fingerprint(c["seed"], c["sampling"], c["model"], c["data"], c["condition"], method)
    return {
        "step": int(step),
        "method": method,
        "num_steps": int(cfg.sampling.num_steps),
        "nfe": int(nfe),
        "seed": int(cfg.seed),
        "config_hash": digest,
    }


def stem(workdir: str, info: dict, tag: str = "") -> str:
    """<workdir>/samples/ckpt_<step>[_<tag>]_<method>_nfe<N>_seed<S>_<config hash>: where sample
    mode writes `provenance` `info`. Samples of other settings never take another's name; the
    same name means the same settings, so the same samples."""
    parts = ["ckpt", str(info["step"]), *([tag] if tag else []), info["method"]]
    parts += [f"nfe{info['nfe']}", f"seed{info['seed']}", info["config_hash"]]
    return os.path.join(workdir, "samples", "_".join(parts))


def taken(workdir: str, info: dict, tag: str = "") -> str | None:
    """The sample file (.npz) of `info`'s settings already in `workdir`, at any NFE (the same
    step, method, seed and config hash give the same samples), or None."""
    pattern = os.path.basename(stem(workdir, {**info, "nfe": "*"}, tag)) + ".npz"
    folder = fs.path(os.path.join(workdir, "samples"))
    if not folder.is_dir():
        return None
    found = sorted(folder.glob(pattern))
    return str(found[0]) if found else None


def refuse_overwrite(workdir: str, info: dict, tag: str = "") -> None:
    """A ValueError naming the existing file and the fix when `taken`."""
    existing = taken(workdir, info, tag)
    if existing is not None:
        raise ValueError(
            f"{existing} exists: the same checkpoint, sampler settings and seed give the same "
            "samples. Pass --overwrite to write them again, or change --config.seed (or a "
            "sampler setting) for new ones"
        )


def write(
    run: Run,
    path_stem: str,
    saved: np.ndarray | dict[str, Any],
    what: str,
    picture: np.ndarray | None = None,
    data: np.ndarray | None = None,
) -> np.ndarray | None:
    """Writes <path_stem>.npz and .png on process 0 (image_io.save_samples: `saved` is an
    array or a dict of arrays) and logs `what -> files`; returns the picture (process 0)."""
    out = None
    if run.main:
        out = image_io.save_samples(path_stem, saved, data=data, picture=picture)
    png = f", {path_stem}.png" if out is not None or not run.main else ""
    run.log.info(f"{what} -> {path_stem}.npz{png}")
    return out
