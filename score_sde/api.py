"""Three lines from a work directory (trained here, or a converted checkpoint) to samples and
likelihoods:

    model = score_sde.load("runs/c10")                      # config.json + its newest checkpoint
    x = model.sample(jax.random.key(0), 64)                  # [64, H, W, C] in [0, 1]; toy: [64, D]
    bpd = model.bits_per_dim(jax.random.key(1), pixels)      # uint8 [B, H, W, C] -> [B]

The sampler and the ODE tolerances are the run's config (config.sampling, config.eval); pass
`overrides` as on the command line ({"sampling.method": "ode"}) to change them.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from score_sde import likelihood
from score_sde.config import Config
from score_sde.run import experiment


@dataclasses.dataclass(frozen=True)
class Model:
    """A trained score model: its experiment, EMA parameters and training step."""

    exp: experiment.Experiment
    params: object
    step: int

    @property
    def cfg(self) -> Config:
        return self.exp.cfg

    @property
    def score_fn(self):
        """score_fn(x, t) -> score [B, *shape] of the EMA network, x in model space [B, *shape]
        (images: config.data.centered ? 2u - 1 : u for u in [0, 1]), t [B]: what the samplers
        of score_sde.sampling, score_sde.likelihood and score_sde.controllable take."""
        return self.exp.score_fn(self.params)

    def sample(self, key: jax.Array, num: int, method: str | None = None) -> np.ndarray:
        """`num` samples of the configured sampler (or `method`): images [num, H, W, C] in [0, 1],
        points [num, D] as the data are."""
        return self.sample_with_nfe(key, num, method)[0]

    def sample_with_nfe(
        self, key: jax.Array, num: int, method: str | None = None
    ) -> tuple[np.ndarray, int]:
        """`sample(key, num, method)` and the sampler's number of score evaluations per batch
        (fixed for PC and the few-step samplers, adaptive for the ODE)."""
        from score_sde.data import preprocess

        x, nfe = self.exp.sample(self.params, key, num, method)
        return (np.asarray(preprocess.to_images(x, self.cfg.data)) if x.ndim == 4 else x), nfe

    @functools.cached_property
    def _logp_fn(self):
        """jit((params, key, x) -> (logp, z, nfe)), compiled once per Model and input shape."""
        e = self.cfg.eval
        lik_fn = likelihood.get_likelihood_fn(
            self.exp.sde, hutchinson_type=e.hutchinson_type, rtol=e.rtol, atol=e.atol
        )
        score_apply = self.exp.score_apply
        return jax.jit(lambda p, k, y: lik_fn(k, lambda z, t: score_apply(p, z, t), y))

    def log_likelihood(self, key: jax.Array, x) -> np.ndarray:
        """log p(x) [B] (nats) of model-space inputs x [B, *shape] through the probability-flow
        ODE at config.eval's tolerances and Hutchinson probe."""
        logp, _, _ = self._logp_fn(self.params, key, jnp.asarray(x, jnp.float32))
        return np.asarray(logp)

    def bits_per_dim(self, key: jax.Array, pixels) -> np.ndarray:
        """Bits/dim [B] of 8-bit images pixels [B, H, W, C] (uniformly dequantized with `key`)."""
        if len(self.exp.shape) != 3:
            raise ValueError(
                f"bits_per_dim is for 8-bit images; this model's data are vectors "
                f"{list(self.exp.shape)} ({self.cfg.data.dataset!r}): use "
                "model.log_likelihood(key, x), log p(x) in nats"
            )
        pixels = np.asarray(pixels)
        if pixels.dtype != np.uint8 or pixels.shape[1:] != self.exp.shape:
            raise ValueError(
                f"bits_per_dim takes uint8 images [B, {', '.join(map(str, self.exp.shape))}], "
                f"got {pixels.dtype} {list(pixels.shape)}"
            )
        k_deq, k_probe = jax.random.split(key)
        u = likelihood.dequantize(k_deq, jnp.asarray(pixels))
        x = 2.0 * u - 1.0 if self.cfg.data.centered else u
        logp = self.log_likelihood(k_probe, x)
        dims = int(np.prod(self.exp.shape))
        return np.asarray(likelihood.bits_per_dim(logp, dims, centered=self.cfg.data.centered))


def load(
    workdir: str, step: int | None = None, overrides: Mapping[str, str] | None = None
) -> Model:
    """The model of `workdir`: its config.json and checkpoint `step` (default: the newest intact
    one). One ValueError naming what is missing."""
    return Model(*experiment.restore(workdir, step, overrides))
