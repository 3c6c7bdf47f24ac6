"""Few-step samplers for every linear SDE: EDM's Heun sampler (Karras et al. 2022, Algorithm 2),
DPM-Solver++ 2M / 2S / 3M and its SDE variant 2M-SDE (Lu et al. 2022), DDIM with eta (Song et al.
2021a), and consistency sampling (Song et al. 2023, Algorithm 1) for consistency models.

One implementation covers VP, sub-VP, VE and any future linear SDE. With the SDE's kernel
x_t = a(t) x_0 + s(t) z, EDM's scaled coordinates x~ = x / a(t) and sigma = s(t) / a(t) turn its
probability-flow ODE into
    dx~ / dsigma = (x~ - D(x~; sigma)) / sigma,   D(x~; sigma) = E[x_0 | x_t]
                                                            = (x_t + s(t)^2 grad log p_t(x_t)) / a(t)
(Tweedie's formula, with t = t(sigma)); lambda = -log sigma is DPM-Solver's half log-SNR. Every
method below is written once in (x~, sigma) and takes any score_fn(x [B, ...], t [B]).

A sampler is `sampler(key, score_fn) -> (x [shape], nfe)`, like the PC and ODE samplers: x_T from
the SDE's prior (x~_0 = x_T / a(T)), the grid sigma_0 = sigma(T) > ... > sigma_{N-1} = sigma(eps)
of `num_steps` = N points (`sigma_grid`), N - 1 solver steps, then with `denoise` (default) the
final step to sigma = 0, which is x = D(x~; sigma_{N-1}) (EDM's last Euler step). nfe counts score
evaluations exactly: Heun and 2S 2 (N - 1) + 1, 2M, 2M-SDE and DDIM N, 3M N + 1 (one fewer each
without `denoise`). Steps run as one lax.fori_loop on the device.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from score_sde.names import ALIASES, FAST_METHODS, canonical_name
from score_sde.sampling import constrain
from score_sde.sde import SDE

DISCRETIZATIONS = ("edm", "uniform_t", "uniform_lambda")
METHODS = FAST_METHODS
# Each method's own defaults: EDM's 18 steps on its rho-schedule (35 NFE), DPM-Solver++'s steps
# uniform in lambda, the SDE solver with enough steps to match the distribution, DDIM's 50
# uniform steps in t.
DEFAULT_STEPS = {"edm_heun": 18, "dpmpp_2m_sde": 100, "ddim": 50, "consistency": 1}
DEFAULT_DISCRETIZATION = {"edm_heun": "edm", "ddim": "uniform_t", "consistency": "edm"}


def defaults(method: str) -> tuple[int, str]:
    """(num_steps, discretization) a method uses when the config leaves them at 0 / 'default'."""
    return DEFAULT_STEPS.get(method, 20), DEFAULT_DISCRETIZATION.get(method, "uniform_lambda")


def sigma_grid(
    sde: SDE, num_steps: int, discretization: str = "edm", *, rho: float = 7.0, eps: float = 1e-3
) -> np.ndarray:
    """Noise levels sigma_0 = sigma(T) > ... > sigma_{N-1} = sigma(eps), float64 [N]:

    - 'edm': (sigma_max^(1/rho) + i / (N - 1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho;
    - 'uniform_t': sigma(t_i) at t_i = linspace(T, eps, N);
    - 'uniform_lambda': uniform in lambda = -log sigma (DPM-Solver's logSNR steps).
    """
    if num_steps < 2:
        raise ValueError(f"config.sampling.num_steps ({num_steps}) must be >= 2")
    if not 0 < eps < sde.T:
        raise ValueError(f"eps must lie in (0, T={sde.T}), got {eps!r}")
    hi, lo = sde.noise_level(sde.T), sde.noise_level(eps)
    i = np.arange(num_steps) / (num_steps - 1)
    match discretization:
        case "edm":
            if not rho > 0:
                raise ValueError(f"config.sampling.rho ({rho}) must be positive")
            return (hi ** (1 / rho) + i * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
        case "uniform_t":
            return np.asarray([sde.noise_level(t) for t in np.linspace(sde.T, eps, num_steps)])
        case "uniform_lambda":
            return np.exp(np.log(hi) + i * (np.log(lo) - np.log(hi)))
    raise ValueError(
        f"config.sampling.discretization ({discretization!r}) must be one of {DISCRETIZATIONS}"
    )


def _coeffs(sde: SDE, x, t):
    """a(t), std(t) of the SDE at the time t (a scalar or [B]), shaped to broadcast against
    x [B, ...]."""
    tt = jnp.broadcast_to(jnp.asarray(t, x.dtype), (x.shape[0],))
    a, s = sde.marginal_coeffs(tt)
    bcast = (-1,) + (1,) * (x.ndim - 1)
    return tt, a.reshape(bcast), s.reshape(bcast)


def denoiser(sde: SDE, score_fn):
    """D(x~ [B, ...], sigma, t) -> E[x_0 | x_t]: the data prediction of `score_fn` at the
    time t = t(sigma) (passed in, precomputed), x_t = a(t) x~."""

    def D(x, sigma, t):
        del sigma  # D is evaluated at t(sigma); sigma is kept for the call sites' readability
        tt, a, s = _coeffs(sde, x, t)
        xt = a * x
        return (xt + s**2 * score_fn(xt, tt)) / a

    return D


def heun_step(slope, x, sigma, sigma_next, t, t_next):
    """One Heun step of dx~/dsigma = slope(x~, t) from sigma to sigma_next (scalars, or [B] for
    one step per example, broadcast against x [B, ...]; t, t_next their times)."""
    bcast = lambda v: jnp.reshape(v, jnp.shape(v) + (1,) * (x.ndim - jnp.ndim(v)))
    h = bcast(sigma_next - sigma)
    d = slope(x, t)
    d2 = slope(x + h * d, t_next)
    return x + h * 0.5 * (d + d2)


def ode_slope(sde: SDE, score_fn):
    """dx~/dsigma (x~ [B, ...], t) = (x~ - D(x~; sigma)) / sigma = -std(t) score(a(t) x~, t): the
    probability-flow ODE in EDM's coordinates, without the difference of two large numbers that
    (x~ - D) / sigma takes at high noise (x~ ~ sigma, D ~ 1: float32 loses ~log10 sigma digits,
    most above sigma_max, where EDM's churn evaluates)."""

    def slope(x, t):
        tt, a, s = _coeffs(sde, x, t)
        return -s * score_fn(a * x, tt)

    return slope


class _Grid:
    """sigma_i, t_i = t(sigma_i), lambda_i = -log sigma_i and extra levels (EDM's sigma^, 2S's
    midpoints) with their times, as device constants of the default float type."""

    def __init__(self, sde: SDE, sigmas: np.ndarray, extra: dict[str, np.ndarray] | None = None):
        dtype = jnp.result_type(float)  # float32, or float64 under jax_enable_x64
        self.n = len(sigmas)
        self.sigma = jnp.asarray(sigmas, dtype)
        self.t = jnp.asarray([sde.time_of_noise_level(s) for s in sigmas], dtype)
        self.lam = jnp.asarray(-np.log(sigmas), dtype)
        for name, values in (extra or {}).items():
            setattr(self, name, jnp.asarray(values, dtype))
        self.t_end = float(self.t[-1])


def _prior(sde: SDE, key, shape, sharding):
    """x~_0 = x_T / a(T) with x_T from the SDE's prior, drawn with `key` itself (as the ODE
    sampler does: the same key gives the same prior sample); step noise uses fold_in(key, i)."""
    a_T = sde.marginal_coeffs(jnp.full((1,), sde.T))[0][0]
    return constrain(sde.prior_sampling(key, shape), sharding) / a_T


def _finish(sde: SDE, D, x, grid: _Grid, denoise: bool):
    """The output in x-space: D at sigma_{N-1} (sigma -> 0, a = 1) or a(eps) x~."""
    if denoise:
        return D(x, grid.sigma[-1], grid.t[-1]), 1
    a = sde.marginal_coeffs(jnp.full((1,), grid.t_end))[0][0]
    return a * x, 0


def get_edm_sampler(
    sde: SDE,
    shape: tuple[int, ...],
    *,
    num_steps: int = 18,
    discretization: str = "edm",
    rho: float = 7.0,
    S_churn: float = 0.0,
    S_tmin: float = 0.0,
    S_tmax: float = float("inf"),
    S_noise: float = 1.0,
    eps: float = 1e-3,
    denoise: bool = True,
    sharding=None,
):
    """EDM's Heun sampler (Karras et al. 2022, Algorithm 2) on sigma_0 > ... > sigma_{N-1}:

        gamma_i = min(S_churn / N, sqrt 2 - 1) if S_tmin <= sigma_i <= S_tmax else 0
        sigma^ = sigma_i (1 + gamma_i);  x^ = x_i + sqrt(sigma^2 - sigma_i^2) S_noise z
        d = (x^ - D(x^; sigma^)) / sigma^;  x_{i+1} = x^ + (sigma_{i+1} - sigma^) d        (Euler)
        d' = (x_{i+1} - D(x_{i+1}; sigma_{i+1})) / sigma_{i+1}
        x_{i+1} = x^ + (sigma_{i+1} - sigma^) (d + d') / 2                              (Heun)
    and the last step to sigma_N = 0 is Euler (= D, with `denoise`). S_churn = 0: deterministic.
    """
    for name, value in (("S_churn", S_churn), ("S_noise", S_noise), ("S_tmin", S_tmin)):
        if not value >= 0:
            raise ValueError(f"config.sampling.{name} ({value}) must be >= 0")
    sigmas = sigma_grid(sde, num_steps, discretization, rho=rho, eps=eps)
    gamma = np.where(
        (sigmas >= S_tmin) & (sigmas <= S_tmax), min(S_churn / num_steps, math.sqrt(2) - 1), 0.0
    )
    hats = sigmas * (1 + gamma)
    grid = _Grid(
        sde,
        sigmas,
        {
            "hat": hats,
            "t_hat": np.array([sde.time_of_noise_level(s) for s in hats]),
            # sqrt(sigma^2 - sigma_i^2) = sigma_i sqrt(gamma (2 + gamma)) in float64: no cancellation
            "churn": sigmas * np.sqrt(gamma * (2 + gamma)),
        },
    )
    stochastic = S_churn > 0

    def sampler(key, score_fn):
        D, slope = denoiser(sde, score_fn), ode_slope(sde, score_fn)
        x = _prior(sde, key, shape, sharding)

        def step(i, x):
            s_hat, s_next = grid.hat[i], grid.sigma[i + 1]
            # x^ = x_i + sqrt(sigma^2 - sigma_i^2) S_noise z, the scale from the host (grid.churn)
            if stochastic:
                z = jax.random.normal(jax.random.fold_in(key, i), x.shape, x.dtype)
                x = x + grid.churn[i] * S_noise * z
            return heun_step(slope, x, s_hat, s_next, grid.t_hat[i], grid.t[i + 1])

        x = jax.lax.fori_loop(0, grid.n - 1, step, x)
        x, last = _finish(sde, D, x, grid, denoise)
        return x, 2 * (grid.n - 1) + last

    return sampler


def get_dpmpp_sampler(
    sde: SDE,
    shape: tuple[int, ...],
    solver: str = "2m",
    *,
    num_steps: int = 20,
    discretization: str = "edm",
    rho: float = 7.0,
    eps: float = 1e-3,
    denoise: bool = True,
    sharding=None,
):
    """DPM-Solver++ in data-prediction form (Lu et al. 2022), h_i = lambda_{i+1} - lambda_i,
    D_i = D(x_i; sigma_i), e^{-h} = sigma_{i+1} / sigma_i:

    - '2m' (multistep, 2nd order): x_{i+1} = e^{-h} x_i + (1 - e^{-h}) (D_i + (D_i - D_{i-1}) / 2r),
      r = h_{i-1} / h_i; the first step is first order (DDIM).
    - '3m' (multistep, 3rd order): the phi_1, phi_2, phi_3 update of D_i, D_{i-1}, D_{i-2}; the
      warm-up is one 2S step (one extra evaluation: a 1st-order first step would cap the global
      order at 2) and one 2M step.
    - '2s' (singlestep, 2nd order): u = first-order step to the lambda midpoint, then
      x_{i+1} = e^{-h} x_i + (1 - e^{-h}) D(u; sqrt(sigma_i sigma_{i+1})).
    """
    if solver not in ("2m", "3m", "2s"):
        raise ValueError(f"DPM-Solver++ variant {solver!r} must be '2m', '3m' or '2s'")
    sigmas = sigma_grid(sde, num_steps, discretization, rho=rho, eps=eps)
    mids = np.sqrt(sigmas[:-1] * sigmas[1:])
    grid = _Grid(
        sde, sigmas, {"mid": mids, "t_mid": np.array([sde.time_of_noise_level(s) for s in mids])}
    )

    def sampler(key, score_fn):
        D = denoiser(sde, score_fn)
        x = _prior(sde, key, shape, sharding)

        def h(i):
            return grid.lam[i + 1] - grid.lam[i]

        def first_order(x, d, i):
            ratio = grid.sigma[i + 1] / grid.sigma[i]
            return ratio * x + (1 - ratio) * d

        def step(i, carry):
            x, d1, d2 = carry  # D_{i-1}, D_{i-2}
            d0 = D(x, grid.sigma[i], grid.t[i])
            if solver == "2s":
                ratio = grid.mid[i] / grid.sigma[i]
                u = ratio * x + (1 - ratio) * d0
                return first_order(x, D(u, grid.mid[i], grid.t_mid[i]), i), d0, d1
            hi = h(i)
            e = jnp.exp(-hi)
            r0 = h(jnp.maximum(i - 1, 0)) / hi
            second = d0 + (d0 - d1) / (2 * r0)
            if solver == "2m":
                update = jnp.where(i == 0, d0, second)
                return e * x + (1 - e) * update, d0, d1
            # 3m: with D(lambda_i + u) = D_i + u D' + u^2 D'' / 2, the step integrates exactly
            #   x_{i+1} = e^{-h} x_i - phi_1 D_i + phi_2 h D' - phi_3 h^2 D''
            # (phi_1 = e^{-h} - 1, phi_2 = phi_1 / h + 1, phi_3 = phi_2 / h - 1/2), with h D' and
            # h^2 D'' from the divided differences of D_i, D_{i-1}, D_{i-2} (to O(h^3)).
            r1 = h(jnp.maximum(i - 2, 0)) / hi
            phi1 = jnp.expm1(-hi)
            phi2 = phi1 / hi + 1
            phi3 = phi2 / hi - 0.5
            dd0, dd1 = (d0 - d1) / r0, (d1 - d2) / r1
            slope = dd0 + r0 / (r0 + r1) * (dd0 - dd1)  # h D'
            curvature = 2 * (dd0 - dd1) / (r0 + r1)  # h^2 D''
            third = e * x - phi1 * d0 + phi2 * slope - phi3 * curvature
            x_next = jnp.where(i == 1, e * x + (1 - e) * second, third)
            return x_next, d0, d1

        def warm_up(x):
            """3m's first step: 2S (2nd order, so the warm-up keeps the global 3rd order)."""
            d0 = D(x, grid.sigma[0], grid.t[0])
            ratio = grid.mid[0] / grid.sigma[0]
            u = ratio * x + (1 - ratio) * d0
            return first_order(x, D(u, grid.mid[0], grid.t_mid[0]), 0), d0

        zeros = jnp.zeros_like(x)
        start, carry, extra = 0, (x, zeros, zeros), 0
        if solver == "3m":
            x, d0 = warm_up(x)
            start, carry, extra = 1, (x, d0, zeros), 1
        x, _, _ = jax.lax.fori_loop(start, grid.n - 1, step, carry)
        x, last = _finish(sde, D, x, grid, denoise)
        per_step = 2 if solver == "2s" else 1
        return x, per_step * (grid.n - 1) + extra + last

    return sampler


def get_dpmpp_2m_sde_sampler(
    sde: SDE,
    shape: tuple[int, ...],
    *,
    num_steps: int = 20,
    discretization: str = "edm",
    rho: float = 7.0,
    S_noise: float = 1.0,
    eps: float = 1e-3,
    denoise: bool = True,
    sharding=None,
):
    """SDE-DPM-Solver++(2M) (Lu et al. 2022): the reverse SDE in data-prediction form,

        x_{i+1} = e^{-2h} x_i + (1 - e^{-2h}) D_i + c_i (D_i - D_{i-1}) + sigma_{i+1} sqrt(1 - e^{-2h}) z,

    c_i = (h - (1 - e^{-2h}) / 2) / (r h) the exact weight of the linear term (r = h_{i-1} / h_i;
    c_0 = 0: the first step is first order), z ~ N(0, S_noise^2 I)."""
    sigmas = sigma_grid(sde, num_steps, discretization, rho=rho, eps=eps)
    grid = _Grid(sde, sigmas)

    def sampler(key, score_fn):
        D = denoiser(sde, score_fn)
        x = _prior(sde, key, shape, sharding)

        def step(i, carry):
            x, d1 = carry
            d0 = D(x, grid.sigma[i], grid.t[i])
            hi = grid.lam[i + 1] - grid.lam[i]
            r = (grid.lam[i] - grid.lam[jnp.maximum(i - 1, 0)]) / hi
            e2 = jnp.exp(-2 * hi)
            c = jnp.where(
                i == 0, 0.0, (hi + 0.5 * jnp.expm1(-2 * hi)) / (jnp.maximum(r, 1e-12) * hi)
            )
            z = jax.random.normal(jax.random.fold_in(key, i), x.shape, x.dtype)
            noise = grid.sigma[i + 1] * jnp.sqrt(-jnp.expm1(-2 * hi)) * S_noise * z
            return e2 * x + (1 - e2) * d0 + c * (d0 - d1) + noise, d0

        x, _ = jax.lax.fori_loop(0, grid.n - 1, step, (x, jnp.zeros_like(x)))
        x, last = _finish(sde, D, x, grid, denoise)
        return x, grid.n - 1 + last

    return sampler


def get_ddim_sampler(
    sde: SDE,
    shape: tuple[int, ...],
    *,
    num_steps: int = 50,
    eta: float = 0.0,
    discretization: str = "edm",
    rho: float = 7.0,
    eps: float = 1e-3,
    denoise: bool = True,
    sharding=None,
):
    """DDIM (Song et al. 2021a) in (x~, sigma): with eps^ = (x~_i - D_i) / sigma_i,

        x~_{i+1} = D_i + sqrt(sigma_{i+1}^2 - c^2) eps^ + c z,  c = eta sigma_{i+1} sqrt(1 - sigma_{i+1}^2 / sigma_i^2),

    which for the VP SDE is DDIM's update with sigma_t(eta); eta = 0 is deterministic (DPM-Solver
    of first order), eta = 1 the ancestral (DDPM-like) sampler."""
    if not eta >= 0:
        raise ValueError(f"config.sampling.eta ({eta}) must be >= 0")
    sigmas = sigma_grid(sde, num_steps, discretization, rho=rho, eps=eps)
    grid = _Grid(sde, sigmas)

    def sampler(key, score_fn):
        D = denoiser(sde, score_fn)
        x = _prior(sde, key, shape, sharding)

        def step(i, x):
            s, s_next = grid.sigma[i], grid.sigma[i + 1]
            d = D(x, s, grid.t[i])
            c = eta * s_next * jnp.sqrt(jnp.maximum(1 - (s_next / s) ** 2, 0.0))
            x_next = d + jnp.sqrt(jnp.maximum(s_next**2 - c**2, 0.0)) * (x - d) / s
            if eta > 0:
                z = jax.random.normal(jax.random.fold_in(key, i), x.shape, x.dtype)
                x_next = x_next + c * z
            return x_next

        x = jax.lax.fori_loop(0, grid.n - 1, step, x)
        x, last = _finish(sde, D, x, grid, denoise)
        return x, grid.n - 1 + last

    return sampler


def get_consistency_sampler(
    sde: SDE,
    shape: tuple[int, ...],
    *,
    num_steps: int = 1,
    discretization: str = "edm",
    rho: float = 7.0,
    eps: float = 1e-3,
    denoise: bool = True,
    sharding=None,
):
    """Multistep consistency sampling (Song et al. 2023, Algorithm 1) with the model's D (for a
    consistency model, its consistency function f: config.model.preconditioning='consistency'):

        x = f(x~_T, tau_0);  then for i >= 1:  x = f(x + sqrt(tau_i^2 - sigma_min^2) z_i, tau_i)

    tau_0 = sigma(T) > tau_1 > ... are the first `num_steps` of num_steps + 1 levels of
    `discretization` (EDM's rho-schedule by default), sigma_min = sigma(eps). NFE = num_steps.
    `denoise` is accepted for the common signature; every step ends on a jump to the data."""
    del denoise
    if num_steps < 1:
        raise ValueError(f"config.sampling.num_steps ({num_steps}) must be >= 1 for consistency")
    levels = sigma_grid(sde, num_steps + 1, discretization, rho=rho, eps=eps)
    grid = _Grid(sde, levels[:-1])
    sigma_min = float(levels[-1])
    noise = np.sqrt(np.maximum(levels[:-1] ** 2 - sigma_min**2, 0.0))

    def sampler(key, score_fn):
        D = denoiser(sde, score_fn)
        x = D(_prior(sde, key, shape, sharding), grid.sigma[0], grid.t[0])
        for i in range(1, grid.n):
            z = jax.random.normal(jax.random.fold_in(key, i), x.shape, x.dtype)
            x = D(x + float(noise[i]) * z, grid.sigma[i], grid.t[i])
        return x, grid.n

    return sampler


def get_sampler(sde: SDE, shape: tuple[int, ...], method: str, **options):
    """The few-step sampler `method` (one of METHODS) with its options: num_steps (0: the
    method's default), discretization ('default': the method's), rho, S_churn, S_tmin, S_tmax,
    S_noise, eta, eps, denoise, sharding. Aliases (ALIASES: 'heun', 'dpm2m', ...) work too."""
    method = canonical_name(method)
    if method not in METHODS:
        valid = ", ".join((*METHODS, *ALIASES))
        raise ValueError(f"unknown few-step sampler {method!r}; valid names: {valid}")
    steps, discretization = defaults(method)
    if options.get("num_steps"):
        steps = options["num_steps"]
    if options.get("discretization", "default") != "default":
        discretization = options["discretization"]
    common: dict[str, Any] = {"num_steps": steps, "discretization": discretization}
    common |= {k: options[k] for k in ("rho", "eps", "denoise", "sharding") if k in options}
    pick = lambda *names: dict[str, Any]({k: options[k] for k in names if k in options})
    match method:
        case "edm_heun":
            return get_edm_sampler(
                sde, shape, **common, **pick("S_churn", "S_tmin", "S_tmax", "S_noise")
            )
        case "dpmpp_2m_sde":
            return get_dpmpp_2m_sde_sampler(sde, shape, **common, **pick("S_noise"))
        case "ddim":
            return get_ddim_sampler(sde, shape, **common, **pick("eta"))
        case "consistency":
            return get_consistency_sampler(sde, shape, **common)
    return get_dpmpp_sampler(sde, shape, method.removeprefix("dpmpp_"), **common)
