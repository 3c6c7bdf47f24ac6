"""Three lines from a work directory (trained here, or a converted checkpoint) to samples and
likelihoods:

    model = score_sde.load("runs/c10")                      # config.json + its newest checkpoint
    x = model.sample(jax.random.key(0), 64)                  # [64, H, W, C] in [0, 1]; toy: [64, D]
    bpd = model.bits_per_dim(jax.random.key(1), pixels)      # uint8 [B, H, W, C] -> [B]

The sampler and the ODE tolerances are the run's config (config.sampling, config.eval); pass
`overrides` as on the command line ({"sampling.method": "ode"}) to change them for the model, or
per call: `model.sample(key, 64, method="dpm2m", num_steps=10, discretization="edm")`,
`model.log_likelihood(key, x, rtol=1e-3)`. In diffusers' words: `method` is the scheduler
(DDIMScheduler 'ddim', DPMSolverMultistepScheduler 'dpmpp_2m' / 'dpmpp_3m' / 'dpmpp_2m_sde',
HeunDiscreteScheduler 'edm_heun', ScoreSdeVeScheduler 'pc'), `num_steps` is `num_inference_steps`,
`num` is `batch_size`, `key` the generator, `eta` DDIM's eta, `discretization="edm"`
`use_karras_sigmas=True`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from score_sde import likelihood, names
from score_sde.config import Config, SamplingConfig, apply_overrides, did_you_mean, from_config
from score_sde.run import experiment

# Model.sample's keyword options: the fields of config.sampling (method and num_steps are
# arguments of their own; num_samples is `num`).
SAMPLER_OPTIONS = tuple(
    f.name
    for f in dataclasses.fields(SamplingConfig)
    if f.name not in ("method", "num_steps", "num_samples")
)


def _text(value: object) -> str:
    """A keyword value as command-line text: strings as given, others as str() (1e-3, True)."""
    return value if isinstance(value, str) else str(value)


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

    def sample(
        self,
        key: jax.Array,
        num: int,
        method: str | None = None,
        *,
        num_steps: int | None = None,
        **options: object,
    ) -> np.ndarray:
        """`num` samples (diffusers' batch_size) of the configured sampler or of `method` (the
        scheduler: 'pc', 'ode', 'ddim', 'dpmpp_2m', 'heun', ...): images [num, H, W, C] in
        [0, 1], points [num, D] as the data are.

        num_steps (diffusers' num_inference_steps): config.sampling.num_steps of the few-step
        samplers, config.model.num_scales (the SDE's N) of 'pc'; the adaptive 'ode' has none.
        options: fields of config.sampling (predictor=, corrector=, snr=, n_steps_each=,
        discretization=, rho=, eta=, S_churn=, rtol=, atol=, eps=, noise_removal=, guide=
        (autoguidance: a smaller or earlier run's work directory), guide_weight=, ...). Both
        are read as `--config.sampling.FIELD=VALUE` is, so the model's config with those
        overrides samples the same; a bad name or value raises the ValueError naming the field.
        Each distinct setting is compiled once per Model."""
        return self.sample_with_nfe(key, num, method, num_steps=num_steps, **options)[0]

    def sample_with_nfe(
        self,
        key: jax.Array,
        num: int,
        method: str | None = None,
        *,
        num_steps: int | None = None,
        **options: object,
    ) -> tuple[np.ndarray, int]:
        """`sample(key, num, method, ...)` and the sampler's number of score evaluations per
        batch (fixed for PC and the few-step samplers, adaptive for the ODE)."""
        from score_sde.data import preprocess

        model = self._with(self._sampling_overrides(method, num_steps, options))
        x, nfe = model.exp.sample(model.params, key, num)
        return (np.asarray(preprocess.to_images(x, self.cfg.data)) if x.ndim == 4 else x), nfe

    def _sampling_overrides(
        self, method: str | None, num_steps: int | None, options: Mapping[str, object]
    ) -> dict[str, str]:
        """sample()'s arguments as command-line overrides {"sampling.num_steps": "10"}."""
        for name in options:
            if name not in SAMPLER_OPTIONS:
                hint = did_you_mean(name, SAMPLER_OPTIONS, prefix="")
                raise ValueError(
                    f"sample() got an unknown sampler option {name!r}{hint}; the options are "
                    f"config.sampling's fields: num_steps, {', '.join(SAMPLER_OPTIONS)}"
                )
        overrides = {f"sampling.{k}": _text(v) for k, v in options.items()}
        if method is not None:
            overrides["sampling.method"] = _text(method)
        if num_steps is not None:
            chosen = names.canonical_name(_text(method or self.cfg.sampling.method))
            if chosen == "ode":
                raise ValueError(
                    f"num_steps ({num_steps}): method 'ode' is adaptive and takes no step count; "
                    "set its tolerances instead (rtol=, atol=) or pick a fixed-step method"
                )
            if chosen == "pc" and not self.cfg.training.continuous:
                raise ValueError(
                    f"num_steps ({num_steps}) of method 'pc' is config.model.num_scales, the N "
                    "this discrete-time model (config.training.continuous=False) was trained "
                    "on; leave num_steps out or pick a few-step method ('ddim', 'dpmpp_2m', ...)"
                )
            field = "model.num_scales" if chosen == "pc" else "sampling.num_steps"
            overrides[field] = _text(num_steps)
        return overrides

    @functools.cached_property
    def _variants(self) -> dict[Config, Model]:
        return {}

    def _with(self, overrides: Mapping[str, str]) -> Model:
        """This model with its config under command-line `overrides` (the same reader and
        checks as `--config.SECTION.FIELD=VALUE`), built once per distinct config."""
        if not overrides:
            return self
        cfg = from_config(apply_overrides(self.cfg.to_dict(), overrides))
        if cfg == self.cfg:
            return self
        if cfg not in self._variants:
            exp = experiment.build(cfg, self.exp.mesh)
            self._variants[cfg] = Model(exp, self.params, self.step)
        return self._variants[cfg]

    @functools.cached_property
    def _logp_fn(self):
        """jit((params, key, x) -> (logp, z, nfe)), compiled once per Model and input shape."""
        e = self.cfg.eval
        lik_fn = likelihood.get_likelihood_fn(
            self.exp.sde, hutchinson_type=e.hutchinson_type, rtol=e.rtol, atol=e.atol
        )
        score_apply = self.exp.score_apply
        return jax.jit(lambda p, k, y: lik_fn(k, lambda z, t: score_apply(p, z, t), y))

    def log_likelihood(
        self,
        key: jax.Array,
        x,
        *,
        rtol: float | None = None,
        atol: float | None = None,
        hutchinson_type: str | None = None,
    ) -> np.ndarray:
        """log p(x) [B] (nats) of model-space inputs x [B, *shape] through the probability-flow
        ODE at config.eval's tolerances and Hutchinson probe, or at those given (read as
        `--config.eval.rtol=...` is; compiled once per distinct setting)."""
        given = {"rtol": rtol, "atol": atol, "hutchinson_type": hutchinson_type}
        model = self._with({f"eval.{k}": _text(v) for k, v in given.items() if v is not None})
        logp, _, _ = model._logp_fn(self.params, key, jnp.asarray(x, jnp.float32))
        return np.asarray(logp)

    def bits_per_dim(
        self,
        key: jax.Array,
        pixels,
        *,
        rtol: float | None = None,
        atol: float | None = None,
        hutchinson_type: str | None = None,
    ) -> np.ndarray:
        """Bits/dim [B] of 8-bit images pixels [B, H, W, C] (uniformly dequantized with `key`);
        rtol, atol, hutchinson_type as in log_likelihood."""
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
        logp = self.log_likelihood(
            k_probe, x, rtol=rtol, atol=atol, hutchinson_type=hutchinson_type
        )
        dims = int(np.prod(self.exp.shape))
        return np.asarray(likelihood.bits_per_dim(logp, dims, centered=self.cfg.data.centered))


def load(
    workdir: str, step: int | None = None, overrides: Mapping[str, str] | None = None
) -> Model:
    """The model of `workdir`: its config.json and checkpoint `step` (default: the newest intact
    one); or of a `.safetensors` file written by `score-sde export` (its config and EMA
    parameters, bit for bit those of the checkpoint; no work directory needed). One ValueError
    naming what is missing."""
    from score_sde.convert import safetensors_export

    if str(workdir).endswith(safetensors_export.SUFFIX):
        return Model(*safetensors_export.restore(workdir, step, overrides))
    return Model(*experiment.restore(workdir, step, overrides))
