"""What every mode builds from a config: the SDE, the network, losses, samplers, data, the state.

Keys: everything derives from key(config.seed): fold_in 0 -> params and the train key,
fold_in 1 -> eval loss keys, fold_in 2 -> samples, fold_in 3 -> likelihood probes.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from score_sde import checkpoint, image_io, parallel, train
from score_sde import losses as losses_lib
from score_sde import sampling as sampling_lib
from score_sde import score_fn as score_fn_lib
from score_sde import sde as sde_lib
from score_sde.modes.config import RunConfig

KEY_INIT, KEY_EVAL_LOSS, KEY_SAMPLES, KEY_LIKELIHOOD = range(4)


@dataclasses.dataclass
class Experiment:
    cfg: RunConfig
    mesh: Mesh
    sde: sde_lib.SDE
    apply_fn: Callable
    init_params: Callable[[jax.Array], Any]
    tx: Any
    shape: tuple[int, ...]  # one example

    @property
    def score_apply(self):
        return score_fn_lib.get_score_fn(
            self.sde, self.apply_fn, continuous=self.cfg.training.continuous
        )

    def key(self, stream: int) -> jax.Array:
        return jax.random.fold_in(jax.random.key(self.cfg.seed), stream)

    def loss_fn(self, *, train: bool):
        t = self.cfg.training
        loss_fn = losses_lib.get_loss_fn(
            self.sde,
            self.apply_fn,
            continuous=t.continuous,
            train=train,
            reduce_mean=t.reduce_mean,
            likelihood_weighting=t.likelihood_weighting,
            importance_weighting=t.importance_weighting,
        )
        if train:  # classifier-free guidance: labels -> null with prob. config.model.class_dropout
            from score_sde import guidance
            from score_sde.modes.conditioning import label_dropout

            loss_fn = guidance.with_label_dropout(loss_fn, *label_dropout(self.cfg.raw))
        return loss_fn

    def abstract_state(self):
        return jax.eval_shape(
            lambda k: train.init_state(self.init_params(k), self.tx, k), jax.random.key(0)
        )

    def new_state(self):
        return train.make_init_state(self.init_params, self.tx, self.mesh)(self.key(KEY_INIT))

    def state_like(self):
        """Abstract state carrying replicated shardings: the target checkpoints restore into."""
        rep = parallel.replicated(self.mesh)
        return jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep), self.abstract_state()
        )

    def sampler(self, method: str, batch: int):
        s = self.cfg.sampling
        return sampling_lib.get_sampler(
            self.sde,
            (batch, *self.shape),
            method=method,
            predictor=s.predictor,
            corrector=s.corrector,
            snr=s.snr,
            n_steps=s.n_steps_each,
            probability_flow=s.probability_flow,
            denoise=s.noise_removal,
        )

    def sample_batches(self, params, key, num: int, method: str, batch: int):
        """Yields (x, nfe) until `num` samples are drawn: x [b, *shape] a global array sharded
        over the mesh (b >= the rows still needed on the last call; trim it), `batch` per call.

        Each device samples b / devices examples with key fold_in(fold_in(key, call), device).
        """
        n_dev = self.mesh.devices.size
        per_device = max(1, -(-min(batch, num) // n_dev))
        sampler = self.sampler(method, per_device)
        score_apply = self.score_apply

        def one_device(params, key):
            key = jax.random.fold_in(key, jax.lax.axis_index(parallel.DATA_AXIS))
            x, nfe = sampler(key, lambda x, t: score_apply(params, x, t))
            return x, jnp.reshape(nfe, (1,))

        run = jax.jit(
            jax.shard_map(
                one_device,
                mesh=self.mesh,
                in_specs=(P(), P()),
                out_specs=(P(parallel.DATA_AXIS), P(parallel.DATA_AXIS)),
                check_vma=False,
            )
        )
        for i in range(-(-num // (per_device * n_dev))):
            x, nfe = run(params, jax.random.fold_in(key, i))
            yield x, int(parallel.to_host(nfe)[0])

    def draw_samples(
        self, params, key, num: int, method: str, batch: int
    ) -> tuple[np.ndarray, int]:
        """`num` samples [num, *shape] (host numpy, on every process) and the sampler's NFE."""
        out, nfe = [], 0
        for x, n in self.sample_batches(params, key, num, method, batch):
            out.append(parallel.to_host(x))
            nfe = n
        return np.concatenate(out)[:num], nfe


def build(cfg: RunConfig, mesh: Mesh | None = None) -> Experiment:
    from score_sde import models

    mesh = mesh or parallel.make_mesh()
    parallel.check_batch_size(cfg.training.batch_size, mesh)
    m = cfg.model
    match cfg.training.sde.lower():
        case "vpsde" | "subvpsde":
            sde = sde_lib.get_sde(
                cfg.training.sde, beta_min=m.beta_min, beta_max=m.beta_max, N=m.num_scales
            )
        case "vesde":
            sde = sde_lib.get_sde(
                "vesde", sigma_min=m.sigma_min, sigma_max=m.sigma_max, N=m.num_scales
            )
        case other:
            raise ValueError(
                f"config.training.sde ({other!r}) is not a known SDE; use 'vpsde', 'subvpsde' "
                "or 'vesde'"
            )
    # The graph definition without computing any parameter (eval_shape): init happens under jit.
    from flax import nnx

    module = nnx.eval_shape(lambda: models.build_module(cfg.raw, jax.random.key(0)))
    apply_fn = models.make_apply_fn(nnx.split(module)[0])
    init_params = lambda key: models.init_model(cfg.raw, key)[1]
    tx = train.make_optimizer(cfg.optim)
    return Experiment(cfg, mesh, sde, apply_fn, init_params, tx, tuple(models.data_shape(cfg.raw)))


def get_dataset(cfg: RunConfig, split: str, *, global_batch: int, seed: int):
    """This process's share of `split` (rows of every global batch it feeds)."""
    from score_sde import datasets

    if global_batch % jax.process_count():
        raise ValueError(
            f"batch size {global_batch} must be divisible by the number of processes "
            f"({jax.process_count()})"
        )
    return datasets.get_dataset(
        cfg.raw,
        split,
        batch_size=global_batch // jax.process_count(),
        seed=seed,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )


def prepare_workdir(workdir: str) -> str:
    """Creates `workdir` (process 0) and checks it is writable; the error names the path and fix."""
    workdir = os.path.abspath(os.path.expanduser(workdir))
    try:
        os.makedirs(workdir, exist_ok=True)
        probe = os.path.join(workdir, f".write_test_{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise ValueError(
            f"--workdir {workdir} is not writable ({e.strerror}); pass a directory you can write "
            "to, e.g. --workdir=./runs/mine"
        ) from None
    return workdir


def is_main_process() -> bool:
    return jax.process_index() == 0


def open_checkpoints(workdir: str, *, read_only: bool = False) -> checkpoint.Checkpoints:
    return checkpoint.Checkpoints(workdir, read_only=read_only)


# ---------------------------------------------------------------------------- pictures


def scatter_image(
    points: list[np.ndarray],
    colors: list[tuple[int, int, int]],
    *,
    size: int = 256,
    extent: float | None = None,
) -> np.ndarray:
    """Rasterizes 2-D point sets [n_i, 2] into one RGB uint8 image [size, size, 3]."""
    allp = np.concatenate([p for p in points if len(p)])
    finite = allp[np.isfinite(allp).all(-1)]
    if extent is None:
        extent = float(np.quantile(np.abs(finite), 0.995)) * 1.1 if len(finite) else 1.0
    img = np.full((size, size, 3), 255, np.uint8)
    for pts, color in zip(points, colors, strict=True):
        pts = pts[np.isfinite(pts).all(-1)]
        ij = np.floor((pts / extent + 1) / 2 * (size - 1)).astype(int)
        ok = ((ij >= 0) & (ij < size)).all(-1)
        col, row = ij[ok, 0], size - 1 - ij[ok, 1]
        img[row, col] = color
    return img


def save_scatter(path: str, panels: dict[str, np.ndarray], size: int = 256) -> None:
    """Side-by-side scatter plots (one per panel, axes fitted to the first), a PNG via image_io."""
    first = np.asarray(next(iter(panels.values())))
    finite = first[np.isfinite(first).all(-1)]
    extent = float(np.quantile(np.abs(finite), 0.999)) * 1.25 if len(finite) else 1.0
    colors = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189)]
    tiles = [
        scatter_image([p], [colors[i % 4]], size=size, extent=extent)
        for i, p in enumerate(panels.values())
    ]
    image_io.save_image_grid(path, np.stack(tiles), nrow=len(tiles), padding=4)


def save_samples(
    path_stem: str, samples: np.ndarray, cfg: RunConfig, data: np.ndarray | None = None
):
    """Writes `<stem>.npz` ("samples": the points, or images as uint8 [N, H, W, C]) and a
    picture: a scatter plot (2-D data) or a grid of the first 64 images."""
    if samples.ndim == 4:
        samples = to_uint8_images(samples, cfg)
    np.savez(path_stem + ".npz", samples=samples)
    if samples.ndim == 2 and samples.shape[1] == 2:
        panels = {"data": data, "samples": samples} if data is not None else {"samples": samples}
        save_scatter(path_stem + ".png", panels)
    elif samples.ndim == 4:
        n = min(len(samples), 64)
        image_io.save_image_grid(path_stem + ".png", samples[:n], nrow=int(np.ceil(np.sqrt(n))))


def to_images(x, cfg: RunConfig):
    """Model-space samples [B, H, W, C] -> images in [0, 1] (jnp or numpy, like `x`)."""
    from score_sde import datasets

    return datasets.get_data_inverse_scaler(cfg.raw)(x).clip(0.0, 1.0)


def to_uint8_images(x, cfg: RunConfig) -> np.ndarray:
    """Model-space samples [B, H, W, C] -> uint8 images, rounded as a saved PNG is."""
    if np.asarray(x).dtype == np.uint8:
        return np.asarray(x)
    return np.round(np.asarray(to_images(np.asarray(x, np.float32), cfg)) * 255.0).astype(np.uint8)


def finite_or_raise(value: float, what: str, step: int) -> None:
    if not np.isfinite(value):
        raise FloatingPointError(
            f"{what} is {value} at step {step}: training diverged. The last good checkpoint is "
            "kept untouched; lower config.optim.lr, set config.optim.grad_clip, or check the data."
        )


__all__ = ["Experiment", "build", "get_dataset", "prepare_workdir", "jnp"]
