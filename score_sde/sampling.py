"""Samplers of the reverse SDE (Song et al. 2021, sec. 4): predictor-corrector and probability-flow ODE.

A sampler is `sampler(key, score_fn) -> (x [shape], nfe)`, where `score_fn(x [B, ...], t [B])` is any
score (a network's, an analytic one) and nfe the number of score evaluations spent. Samplers are
pure and jit-compatible; PC runs as one `lax.fori_loop`, the ODE as one on-device diffrax solve.
The PC loop takes an optional hook run after each corrector and predictor step (conditional
sampling by replacement: `sampler(key, score_fn, cond)`, see `get_pc_sampler`).

Predictor (one step from t to t - T/N), `update(key, sde, score_fn, x, t, probability_flow)`:
- euler_maruyama: x <- x - f~(x, t) dt + g dw with the reverse drift f~ = f - g^2 s.
- reverse_diffusion: x <- x - f_i + G_i^2 s + G_i z, the reverse of the SDE's discretization.
- ancestral_sampling: DDPM ancestral sampling (VP) or its SMLD analogue (VE).
- none.
Corrector (n_steps Langevin steps at fixed t), `update(key, sde, score_fn, x, t, snr, n_steps)`:
- langevin: step size eps_i = 2 alpha_i (snr ||z|| / ||s||)^2, norms over the batch or per example.
- ald (annealed Langevin): eps_i = 2 alpha_i (snr std(t))^2.
- none.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from score_sde.names import LANGEVIN_NORMS, corrector_name, predictor_name
from score_sde.sde import SDE, VESDE, VPSDE, batch_mul
from score_sde.solvers import solve_ode


def constrain(x, sharding):
    return x if sharding is None else jax.lax.with_sharding_constraint(x, sharding)


def _norm(x):
    return jnp.sqrt(jnp.sum(x.reshape(x.shape[0], -1) ** 2, axis=-1))


# ----------------------------------------------------------------------------------- predictors


def euler_maruyama(key, sde: SDE, score_fn, x, t, probability_flow=False):
    dt = -sde.T / sde.N
    drift, diffusion = sde.reverse(score_fn, probability_flow).sde(x, t)
    x_mean = x + drift * dt
    z = jax.random.normal(key, x.shape, x.dtype)
    return x_mean + batch_mul(diffusion * jnp.sqrt(-dt), z), x_mean


def reverse_diffusion(key, sde: SDE, score_fn, x, t, probability_flow=False):
    f, g = sde.reverse(score_fn, probability_flow).discretize(x, t)
    x_mean = x - f
    z = jax.random.normal(key, x.shape, x.dtype)
    return x_mean + batch_mul(g, z), x_mean


def ancestral_sampling(key, sde: SDE, score_fn, x, t, probability_flow=False):
    if probability_flow:
        raise ValueError(
            "ancestral_sampling has no probability-flow variant; use reverse_diffusion"
        )
    i = sde.discrete_index(t)
    z = jax.random.normal(key, x.shape, x.dtype)
    score = score_fn(x, t)
    match sde:
        case VESDE():
            sigmas = jnp.asarray(sde.discrete_sigmas, x.dtype)
            sigma = sigmas[i]
            adjacent = jnp.where(i == 0, jnp.zeros_like(sigma), sigmas[jnp.maximum(i - 1, 0)])
            x_mean = x + batch_mul(sigma**2 - adjacent**2, score)
            std = jnp.sqrt(adjacent**2 * (sigma**2 - adjacent**2) / sigma**2)
            return x_mean + batch_mul(std, z), x_mean
        case VPSDE():
            beta = jnp.asarray(sde.discrete_betas, x.dtype)[i]
            x_mean = batch_mul(1.0 / jnp.sqrt(1.0 - beta), x + batch_mul(beta, score))
            return x_mean + batch_mul(jnp.sqrt(beta), z), x_mean
        case _:
            raise ValueError(
                f"ancestral_sampling is defined for VPSDE and VESDE, not {type(sde).__name__}; "
                "use reverse_diffusion or euler_maruyama"
            )


def no_predictor(key, sde, score_fn, x, t, probability_flow=False):
    return x, x


def get_predictor(name: str):
    """Returns (update function, score evaluations per step)."""
    match predictor_name(name):
        case "euler_maruyama":
            return euler_maruyama, 1
        case "reverse_diffusion":
            return reverse_diffusion, 1
        case "ancestral_sampling":
            return ancestral_sampling, 1
        case _:
            return no_predictor, 0


# ----------------------------------------------------------------------------------- correctors


def _langevin_alpha(sde: SDE, t, dtype):
    if isinstance(sde, VPSDE):
        return jnp.asarray(sde.alphas, dtype)[sde.discrete_index(t)]
    return jnp.ones_like(t)  # sub-VP and VE: no DDPM alpha (the published code crashed on sub-VP)


def langevin(key, sde: SDE, score_fn, x, t, snr, n_steps, norm="batch", groups: int = 1):
    """Langevin steps with eps = 2 alpha (snr ||z|| / ||s||)^2, the norm ratio taken by `norm`
    (LANGEVIN_NORMS; z: the step's noise, s: the score, both [B, ...]):

    - 'batch' (default): sqrt(mean ||z||^2 / mean ||s||^2) over the whole global batch. Under jit
      the mean spans all devices, so the step does not depend on the device count, and for large
      batches it is a deterministic function of t, as Langevin dynamics needs.
    - 'mean': mean ||z|| / mean ||s|| over the global batch, the original code's rule.
    - 'mean_per_device': the same over each of `groups` consecutive slices of the batch (the
      per-device batches: the original ran it under pmap, so its step depended on the device
      count); the published FIDs were made with it.
    - 'example': ||z|| / ||s|| per example, so no sample's step depends on the others; but the step
      then depends on the state through ||s(x)||, which biases the stationary distribution (about
      5x the variance error of 'batch' on a 16-D mixture at snr 0.16; tests/method/test_sampling.py).
    """
    if norm not in LANGEVIN_NORMS:
        raise ValueError(f"langevin norm must be one of {LANGEVIN_NORMS}, got {norm!r}")
    alpha = _langevin_alpha(sde, t, x.dtype)

    def ratio(z, grad):
        zn, gn = _norm(z), _norm(grad)
        match norm:
            case "example":
                return zn / gn
            case "batch":
                return jnp.sqrt(jnp.mean(zn**2) / jnp.mean(gn**2))
            case _:  # "mean", "mean_per_device": the mean of each group's norms
                g = groups if norm == "mean_per_device" else 1
                r = zn.reshape(g, -1).mean(1) / gn.reshape(g, -1).mean(1)
                return jnp.repeat(r, zn.shape[0] // g)

    def step(i, carry):
        x, _ = carry
        grad = score_fn(x, t)
        z = jax.random.normal(jax.random.fold_in(key, i), x.shape, x.dtype)
        step_size = 2 * alpha * (snr * ratio(z, grad)) ** 2
        x_mean = x + batch_mul(step_size, grad)
        return x_mean + batch_mul(jnp.sqrt(2 * step_size), z), x_mean

    return jax.lax.fori_loop(0, n_steps, step, (x, x))


def annealed_langevin(key, sde: SDE, score_fn, x, t, snr, n_steps, norm="example"):
    """Annealed Langevin dynamics (SMLD): eps = 2 alpha (snr std(t))^2, independent of the batch."""
    alpha = _langevin_alpha(sde, t, x.dtype)
    std = sde.marginal_coeffs(t)[1]
    step_size = 2 * alpha * (snr * std) ** 2

    def step(i, carry):
        x, _ = carry
        grad = score_fn(x, t)
        z = jax.random.normal(jax.random.fold_in(key, i), x.shape, x.dtype)
        x_mean = x + batch_mul(step_size, grad)
        return x_mean + batch_mul(jnp.sqrt(2 * step_size), z), x_mean

    return jax.lax.fori_loop(0, n_steps, step, (x, x))


def no_corrector(key, sde, score_fn, x, t, snr, n_steps, norm="example"):
    return x, x


def get_corrector(name: str):
    """Returns (update function, score evaluations per Langevin step)."""
    match corrector_name(name):
        case "langevin":
            return langevin, 1
        case "ald":
            return annealed_langevin, 1
        case _:
            return no_corrector, 0


# ----------------------------------------------------------------------------------- samplers


def pc_steps(sde: SDE, predictor: str, corrector: str, n_steps: int, eps: float):
    """Checks a PC configuration; returns (predictor update, corrector update, NFE of a run)."""
    predictor_fn, p_nfe = get_predictor(predictor)
    corrector_fn, c_nfe = get_corrector(corrector)
    if n_steps < 0:
        raise ValueError(f"n_steps (corrector steps per noise level) must be >= 0, got {n_steps}")
    if not 0 < eps < sde.T:
        raise ValueError(f"eps must lie in (0, T={sde.T}), got {eps!r}")
    if predictor_fn is ancestral_sampling and not isinstance(sde, VPSDE | VESDE):
        raise ValueError("ancestral_sampling needs a VPSDE or VESDE; use reverse_diffusion")
    # The DDPM chain has beta_i = beta_max / N at its last step: the ancestral update divides by
    # sqrt(1 - beta_i), reverse diffusion and Langevin take sqrt(1 - beta_i).
    if isinstance(sde, VPSDE):
        uses = [
            (f"predictor {predictor}", predictor_fn is ancestral_sampling, sde.beta_max >= sde.N),
            (f"predictor {predictor}", predictor_fn is reverse_diffusion, sde.beta_max > sde.N),
            (
                f"corrector {corrector}",
                corrector_fn in (langevin, annealed_langevin),
                sde.beta_max > sde.N,
            ),
        ]
        bad = [name for name, used, broken in uses if used and broken]
        if bad:
            raise ValueError(
                f"VPSDE(N={sde.N}, beta_max={sde.beta_max}): the DDPM discretization used by "
                f"{' and '.join(bad)} needs beta_max / N < 1; raise N (config.model.num_scales) "
                "or use predictor 'euler_maruyama'"
            )
    return predictor_fn, corrector_fn, sde.N * (p_nfe + c_nfe * n_steps)


def get_pc_sampler(
    sde: SDE,
    shape: tuple[int, ...],
    predictor: str = "reverse_diffusion",
    corrector: str = "langevin",
    *,
    snr: float = 0.16,
    n_steps: int = 1,
    probability_flow: bool = False,
    denoise: bool = True,
    eps: float = 1e-3,
    langevin_norm: str = "batch",
    sharding: jax.sharding.Sharding | None = None,
    hook: Callable | None = None,
):
    """Predictor-corrector sampler over N steps from T to eps (Song et al. 2021, Algorithm 1).

    Each step runs the corrector then the predictor at t_i = linspace(T, eps, N)[i]. With `denoise`
    the output is the last predictor's mean (no noise added at the final step). `sharding`, if
    given, lays the batch out over devices (e.g. NamedSharding(mesh, P('data'))).

    Returns `sampler(key, score_fn) -> (x [shape], nfe)`; with a `hook`,
    `sampler(key, score_fn, cond) -> (x, nfe)`, where `hook(key, x, x_mean, t [B], cond) ->
    (x, x_mean)` (x, x_mean: [shape]; cond: any pytree, passed through) runs after the corrector at
    t_i and after the predictor at t_{i+1} (t_N = 0), e.g. the replacement step of
    score_sde.controllable. Its keys, fold_in(k_p, 1) and fold_in(k_p, 2), are disjoint from the
    corrector's and predictor's, so the loop's own draws are the same with or without a hook.
    """
    predictor_fn, corrector_fn, nfe = pc_steps(sde, predictor, corrector, n_steps, eps)
    if langevin_norm == "mean_per_device" and corrector_fn is langevin:
        rows = shape[0] if sharding is None else sharding.shard_shape(shape)[0]
        corrector_fn = functools.partial(langevin, groups=shape[0] // rows)

    def run(key, score_fn, cond):
        key, k_prior = jax.random.split(key)
        x = constrain(sde.prior_sampling(k_prior, shape), sharding)
        timesteps = jnp.concatenate([jnp.linspace(sde.T, eps, sde.N), jnp.zeros((1,))])

        def body(i, carry):
            x, _ = carry
            k_c, k_p = jax.random.split(jax.random.fold_in(key, i))
            t = jnp.full((shape[0],), timesteps[i], x.dtype)
            # 1. corrector at t_i (its Langevin steps draw with fold_in(k_c, j), j < n_steps)
            x, x_mean = corrector_fn(k_c, sde, score_fn, x, t, snr, n_steps, langevin_norm)
            if hook is not None:
                x, x_mean = hook(jax.random.fold_in(k_p, 1), x, x_mean, t, cond)
            # 2. predictor from t_i to t_{i+1} (its noise is drawn with k_p itself)
            x, x_mean = predictor_fn(k_p, sde, score_fn, x, t, probability_flow)
            if hook is not None:
                t_next = jnp.full((shape[0],), timesteps[i + 1], x.dtype)
                x, x_mean = hook(jax.random.fold_in(k_p, 2), x, x_mean, t_next, cond)
            return x, x_mean

        x, x_mean = jax.lax.fori_loop(0, sde.N, body, (x, x))
        return (x_mean if denoise else x), nfe

    if hook is not None:
        return run

    def sampler(key, score_fn):
        return run(key, score_fn, None)

    return sampler


def get_ode_sampler(
    sde: SDE,
    shape: tuple[int, ...],
    *,
    method: str = "tsit5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    eps: float = 1e-3,
    denoise: bool = False,
    max_steps: int = 8192,
    sharding: jax.sharding.Sharding | None = None,
):
    """Probability-flow ODE sampler: dx/dt = f(x, t) - g(t)^2 s(x, t) / 2 from T to eps, adaptively.

    With `denoise`, one reverse-diffusion step (without noise) at eps follows; nfe counts it.
    """
    if not 0 < eps < sde.T:
        raise ValueError(f"eps must lie in (0, T={sde.T}), got {eps!r}")

    def sampler(key, score_fn):
        x = constrain(sde.prior_sampling(key, shape), sharding)
        rsde = sde.reverse(score_fn, probability_flow=True)

        def drift(t, y):
            return rsde.sde(y, jnp.full((shape[0],), t, y.dtype))[0]

        x, nfe = solve_ode(
            drift, x, sde.T, eps, method=method, rtol=rtol, atol=atol, max_steps=max_steps
        )
        if denoise:
            _, x = reverse_diffusion(key, sde, score_fn, x, jnp.full((shape[0],), eps, x.dtype))
            nfe = nfe + 1
        return x, nfe

    return sampler


def get_sampler(
    sde: SDE,
    shape: tuple[int, ...],
    *,
    method: str = "pc",
    predictor: str = "reverse_diffusion",
    corrector: str = "langevin",
    snr: float = 0.16,
    n_steps: int = 1,
    probability_flow: bool = False,
    denoise: bool = True,
    eps: float = 1e-3,
    ode_solver: str = "tsit5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    langevin_norm: str = "batch",
    sharding: jax.sharding.Sharding | None = None,
):
    """The sampler a config asks for (config.sampling.method: 'pc' or 'ode')."""
    match method.lower():
        case "pc":
            return get_pc_sampler(
                sde,
                shape,
                predictor,
                corrector,
                snr=snr,
                n_steps=n_steps,
                probability_flow=probability_flow,
                denoise=denoise,
                eps=eps,
                langevin_norm=langevin_norm,
                sharding=sharding,
            )
        case "ode":
            return get_ode_sampler(
                sde,
                shape,
                method=ode_solver,
                rtol=rtol,
                atol=atol,
                eps=eps,
                denoise=denoise,
                sharding=sharding,
            )
        case _:
            raise ValueError(f"unknown sampling method {method!r}; valid names: 'pc', 'ode'")
