"""The method's names, without JAX: what the config layer checks a config against and what the
method's modules dispatch on (one list, read by both), so reading a config starts no JAX."""

from __future__ import annotations

PREDICTORS = ("euler_maruyama", "reverse_diffusion", "ancestral_sampling", "none")
CORRECTORS = ("langevin", "ald", "none")
# The original code's class names, lower-cased, and the long name of ALD.
_PREDICTOR_ALIASES = {f"{n.replace('_', '')}predictor": n for n in PREDICTORS}
_CORRECTOR_ALIASES = {
    **{f"{n}corrector": n for n in ("langevin", "none")},
    "annealed_langevin": "ald",
    "annealedlangevindynamics": "ald",
}

# The Langevin corrector's step-size rule (score_sde.sampling.langevin).
LANGEVIN_NORMS = ("batch", "mean", "mean_per_device", "example")

# score_sde.losses: how training draws t; score_sde.consistency: the teacher's ODE step.
TIME_SAMPLINGS = ("uniform", "logit_normal")
TEACHER_SOLVERS = ("heun", "euler")

# The few-step methods of score_sde.fast_sampling.
FAST_METHODS = (
    "edm_heun", "dpmpp_2m", "dpmpp_2s", "dpmpp_3m", "dpmpp_2m_sde", "ddim", "consistency",
)  # fmt: skip
# Short names accepted wherever a method is named (config, launcher, API).
ALIASES = {
    "heun": "edm_heun",
    "dpm2m": "dpmpp_2m",
    "dpm2s": "dpmpp_2s",
    "dpm3m": "dpmpp_3m",
    "dpm2m_sde": "dpmpp_2m_sde",
    # DDIM (eta = 0) is Euler's method on dx~/dsigma; on the linear flow path with uniform t it is
    # exactly Euler's method on the velocity, dx/dt = v (tests/method/test_flow.py).
    "euler": "ddim",
}


def _lookup(kind: str, name: str, valid: tuple[str, ...], aliases: dict[str, str]) -> str:
    n = name.lower()
    n = aliases.get(n, n)
    if n not in valid:
        raise ValueError(f"unknown {kind} {name!r}; valid names: {valid}")
    return n


def predictor_name(name: str) -> str:
    """The PREDICTORS name of `name` (any case, or the original's class name); ValueError."""
    return _lookup("predictor", name, PREDICTORS, _PREDICTOR_ALIASES)


def corrector_name(name: str) -> str:
    """The CORRECTORS name of `name` (any case, or the original's class name); ValueError."""
    return _lookup("corrector", name, CORRECTORS, _CORRECTOR_ALIASES)


def kdiffusion_hint(name: str) -> str | None:
    """For a name that is not one of ours but k-diffusion's ('sample_dpmpp_2m', the webui's
    'dpmpp_2m_karras'): the exact setting of the same sampler here, else None. k-diffusion's
    Karras schedule is our discretization 'edm' (rho = 7)."""
    base = name.lower().removeprefix("sample_")
    karras = base.endswith("_karras")
    base = canonical_name(base.removesuffix("_karras"))
    if base not in FAST_METHODS:
        return None
    setting = f"--config.sampling.method={base}"
    if karras:
        setting += " --config.sampling.discretization=edm"
    schedule = " on the Karras schedule (our discretization 'edm', rho 7)" if karras else ""
    return f"{name!r} is k-diffusion's name for {base}{schedule}: pass {setting}"


def canonical_name(method: str) -> str:
    """The FAST_METHODS name of `method` or of its alias ('heun' -> 'edm_heun'); others unchanged."""
    return ALIASES.get(method, method)
