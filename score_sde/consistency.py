"""Consistency models (Song et al. 2023) with the improved training of Song & Dhariwal 2023 (iCT).

A consistency model f(x~, sigma) maps every point of a probability-flow ODE trajectory, in EDM's
coordinates x~ = x_t / alpha(t), sigma = std(t) / alpha(t), to the trajectory's end at sigma_min.
Its network is preconditioned so that f(x~, sigma_min) = x~ exactly
(score_fn.Preconditioning('consistency'): c_skip(sigma_min) = 1, c_out(sigma_min) = 0), and it is
sampled in one or a few jumps (fast_sampling.get_consistency_sampler).

Training pairs adjacent levels sigma_n < sigma_{n+1} of EDM's rho-grid and minimizes
    lambda_n d(f(x~_{n+1}, sigma_{n+1}), stopgrad f(x~_n, sigma_n)),   x~_{n+1} = x_0 + sigma_{n+1} z,
- distillation (CD): x~_n is one Heun (or Euler) step of a teacher's PF ODE from x~_{n+1}; N fixed
  levels, n uniform, lambda = 1;
- training (CT, as iCT): x~_n = x_0 + sigma_n z with the same z (no teacher); N(k) =
  min(s0 2^floor(k / K'), s1) + 1 levels at step k of K (K' = floor(K / (log2(s1 / s0) + 1))),
  n drawn from the log-normal over sigma (P_mean, P_std), lambda = 1 / (sigma_{n+1} - sigma_n).
Both use the pseudo-Huber distance d = sqrt(||a - b||^2 + c^2) - c (c = 0.00054 sqrt(dim) by
default); the same dropout key serves both evaluations. The target network is, as iCT, the
student itself under stopgrad for CT, and for CD the run's EMA parameters (the original CD's
theta^-; `loss_fn.takes_target`: the train step passes them): with the student itself CD drifts
(on a 2-D mixture its endpoint error grew from 0.5 to 2 over 1000 steps), with the EMA it
converges (0.05). Shapes: x [B, ...]; sigma [B].
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from score_sde import fast_sampling
from score_sde.names import TEACHER_SOLVERS
from score_sde.score_fn import ApplyFn, Preconditioning, get_denoiser
from score_sde.sde import SDE, batch_mul


def karras_sigmas(n, sigma_min: float, sigma_max: float, rho: float = 7.0, size: int | None = None):
    """EDM's levels sigma_i = (sigma_min^(1/rho) + i / (n - 1) (sigma_max^(1/rho) -
    sigma_min^(1/rho)))^rho, ascending, for i < size (default n); n may be traced (then give size;
    entries i >= n lie above sigma_max and are never used)."""
    size = int(n) if size is None else size
    i = jnp.arange(size, dtype=jnp.float32)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (lo + i / (jnp.asarray(n, jnp.float32) - 1) * (hi - lo)) ** rho


def num_levels(step, total_steps: int, s0: int = 10, s1: int = 1280):
    """iCT's discretization curriculum: N(k) = min(s0 2^floor(k / K'), s1) + 1 levels at step k
    (an int or int32 array) of `total_steps`, K' = floor(K / (log2(s1 / s0) + 1))."""
    k_prime = max(math.floor(total_steps / (math.log2(s1 // s0) + 1)), 1)
    cap = math.ceil(math.log2(s1 / s0)) + 1  # doublings past s1 change nothing (and overflow)
    doublings = jnp.minimum(jnp.asarray(step) // k_prime, cap)
    return jnp.minimum(s0 * 2**doublings, s1).astype(jnp.int32) + 1


def level_probabilities(sigmas: jax.Array, n, P_mean: float, P_std: float) -> jax.Array:
    """p(pair i) [len(sigmas) - 1] proportional to erf((ln sigma_{i+1} - P_mean) / (sqrt 2 P_std))
    - erf((ln sigma_i - P_mean) / (sqrt 2 P_std)) for i < n - 1, zero beyond: the log-normal
    mass between adjacent levels (iCT)."""
    cdf = jax.scipy.special.erf((jnp.log(sigmas) - P_mean) / (math.sqrt(2.0) * P_std))
    mass = jnp.where(jnp.arange(len(sigmas) - 1) < n - 1, cdf[1:] - cdf[:-1], 0.0)
    return mass / jnp.sum(mass)


def pseudo_huber(a: jax.Array, b: jax.Array, c: float) -> jax.Array:
    """sqrt(||a - b||^2 + c^2) - c per example [B] (a, b [B, ...])."""
    sq = jnp.sum(jnp.square(a - b).reshape(a.shape[0], -1), axis=-1)
    return jnp.sqrt(sq + c**2) - c


def default_huber_c(dim: int) -> float:
    """iCT's c = 0.00054 sqrt(dim) (0.03 for CIFAR-10's 3072 dimensions)."""
    return 0.00054 * math.sqrt(dim)


def teacher_step(teacher_sde: SDE, teacher_score_fn, solver: str = "heun"):
    """`step(x~, sigma, sigma_next, t, t_next) -> x~'`: one step of the teacher's PF ODE
    dx~/dsigma (fast_sampling.ode_slope) per example (sigma, t: [B]); Heun or Euler."""
    if solver not in TEACHER_SOLVERS:
        raise ValueError(
            f"config.training.teacher_solver ({solver!r}) must be one of {TEACHER_SOLVERS}"
        )
    slope = fast_sampling.ode_slope(teacher_sde, teacher_score_fn)
    if solver == "heun":
        return lambda x, s, s_next, t, t_next: fast_sampling.heun_step(
            slope, x, s, s_next, t, t_next
        )
    return lambda x, s, s_next, t, t_next: x + batch_mul(s_next - s, slope(x, t))


def get_consistency_loss_fn(
    apply_fn: ApplyFn,
    preconditioning: Preconditioning,
    *,
    sigma_max: float,
    total_steps: int,
    train: bool = True,
    rho: float = 7.0,
    s0: int = 10,
    s1: int = 1280,
    P_mean: float = -1.1,
    P_std: float = 2.0,
    huber_c: float = 0.0,
    teacher: tuple[SDE, Callable] | None = None,
    teacher_solver: str = "heun",
    num_scales: int = 18,
):
    """`loss_fn(params, key, batch, step=None, target=None)` of consistency training, or with
    `teacher` = (teacher_sde, teacher_score_fn(x, t)) of consistency distillation on `num_scales`
    fixed levels. `step` (traced) sets CT's curriculum; None is its end (s1 + 1 levels: eval
    losses). `target` (CD) are the target network's params (default: params). huber_c = 0 takes
    default_huber_c of the data's dimension."""
    if preconditioning.kind != "consistency":
        raise ValueError(
            "a consistency model needs config.model.preconditioning='consistency' (f(x, "
            f"sigma_min) = x), not {preconditioning.kind!r}"
        )
    sigma_min = preconditioning.sigma_min
    f_apply = get_denoiser(apply_fn, preconditioning)
    if teacher is not None:
        if num_scales < 2:
            raise ValueError(
                f"config.model.num_scales ({num_scales}) must be >= 2 for distillation"
            )
        sigmas_np = np.asarray(karras_sigmas(num_scales, sigma_min, sigma_max, rho), np.float64)
        teacher_sde, teacher_score_fn = teacher
        times = jnp.asarray([teacher_sde.time_of_noise_level(s) for s in sigmas_np], jnp.float32)
        step_fn = teacher_step(teacher_sde, teacher_score_fn, teacher_solver)

    def loss_fn(params, key, batch, step=None, target=None):
        x = batch["x"]
        b = x.shape[0]
        c = huber_c or default_huber_c(math.prod(x.shape[1:]))
        k_n, k_z, k_drop = jax.random.split(key, 3)
        z = jax.random.normal(k_z, x.shape, x.dtype)
        if teacher is None:
            n = s1 + 1 if step is None else num_levels(step, total_steps, s0, s1)
            sigmas = karras_sigmas(n, sigma_min, sigma_max, rho, size=s1 + 1)
            probs = level_probabilities(sigmas, n, P_mean, P_std)
            i = jax.random.categorical(k_n, jnp.log(probs), shape=(b,))
            lo, hi = sigmas[i], sigmas[i + 1]
        else:
            sig = jnp.asarray(sigmas_np, jnp.float32)
            i = jax.random.randint(k_n, (b,), 0, num_scales - 1)
            lo, hi = sig[i], sig[i + 1]
        x_hi = x + batch_mul(hi, z)
        if teacher is None:
            x_lo, weight = x + batch_mul(lo, z), 1.0 / (hi - lo)
        else:
            x_lo = jax.lax.stop_gradient(step_fn(x_hi, hi, lo, times[i + 1], times[i]))
            weight = jnp.ones_like(lo)
        labels = batch.get("label")
        f_hi = f_apply(params, x_hi, hi, train=train, rng=k_drop, class_labels=labels)
        f_lo = f_apply(
            params if target is None else target, x_lo, lo, train=train, rng=k_drop,
            class_labels=labels,
        )  # fmt: skip
        return jnp.mean(weight * pseudo_huber(f_hi, jax.lax.stop_gradient(f_lo), c))

    # markers for the train step (score_sde.run.train.train_step): pass the step, and for CD the
    # EMA parameters as the target network
    loss_fn.__dict__.update(takes_step=True, takes_target=teacher is not None)
    return loss_fn
