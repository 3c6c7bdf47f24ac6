"""Sample mode: a checkpoint's EMA params -> config.sampling.num_samples samples on all devices.

Any sampler of score_sde.sampling: config.sampling.method 'pc' (any predictor / corrector) or 'ode'.
Writes `<workdir>/samples/ckpt_<step>_<method>.npz` and a PNG (image grid or 2-D scatter plot).
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh

from score_sde.metrics_log import MetricsLogger
from score_sde.modes import common
from score_sde.modes.config import RunConfig


def sample(
    cfg: RunConfig, workdir: str, *, mesh: Mesh | None = None, step: int | None = None, stream=None
) -> np.ndarray:
    """Draws the samples from checkpoint `step` (default: the newest) and returns them [N, ...]."""
    workdir = common.prepare_workdir(workdir)
    exp = common.build(cfg, mesh)
    log = MetricsLogger(workdir, enabled=common.is_main_process(), stream=stream)
    ckpts = common.open_checkpoints(workdir)
    if ckpts.latest_step() is None:
        raise ValueError(
            f"no checkpoint in {workdir}; train first with --mode=train --workdir={workdir}"
        )
    state = ckpts.restore(exp.state_like(), step)
    step = int(state.step)
    s = cfg.sampling
    key = jax.random.fold_in(jax.random.fold_in(exp.key(common.KEY_SAMPLES), step), 2)
    samples, nfe = exp.draw_samples(state.ema_params, key, s.num_samples, s.method, s.batch_size)
    stem = os.path.join(workdir, "samples", f"ckpt_{step}_{s.method}")
    if common.is_main_process():
        os.makedirs(os.path.dirname(stem), exist_ok=True)
        common.save_samples(stem, samples, cfg)
    log.info(
        f"{len(samples)} samples from checkpoint {step} with {s.method} "
        f"({nfe} score evaluations per batch) -> {stem}.npz, {stem}.png"
    )
    ckpts.close()
    log.close()
    return samples
