"""Forward SDEs dx = f(x, t) dt + g(t) dw of Song et al. (2021), behind one interface.

Every SDE here is linear in x, so the perturbation kernel is Gaussian:
    p_0t(x_t | x_0) = N(x_t; alpha(t) x_0, std(t)^2 I).
Shapes: x is [B, ...]; t is [B] (one time per example); diffusion and std are [B].

The SDEs are frozen dataclasses (hashable), so jitted functions may close over them or take them
as static arguments. All methods are pure jnp and safe under jit, vmap and grad.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Callable
from functools import cached_property

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

ScoreFn = Callable[[jax.Array, jax.Array], jax.Array]


def batch_mul(v: jax.Array, x: jax.Array) -> jax.Array:
    """Multiplies a per-example vector v [B] into x [B, ...]."""
    return v.reshape(v.shape + (1,) * (x.ndim - v.ndim)) * x


def _per_example_sum(x: jax.Array) -> jax.Array:
    return jnp.sum(x.reshape(x.shape[0], -1), axis=-1)


def _check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be positive, got {value!r}")


class SDE(abc.ABC):
    """Interface shared by all SDEs. Time runs over [0, T]; N is the number of discretization steps."""

    N: int

    @property
    def T(self) -> float:
        return 1.0

    @abc.abstractmethod
    def sde(self, x: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Returns (drift f(x, t) [B, ...], diffusion g(t) [B])."""

    @abc.abstractmethod
    def marginal_coeffs(self, t: ArrayLike) -> tuple[jax.Array, jax.Array]:
        """Returns (alpha(t), std(t)) of the perturbation kernel, each shaped like t."""

    def coeff_derivatives(self, t: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(d alpha / dt, d std / dt), each shaped like t (by forward-mode differentiation here;
        FlowPath has closed forms). The velocity of x_t = alpha x_0 + std z is alpha' x_0 + std' z."""
        return jax.jvp(self.marginal_coeffs, (t,), (jnp.ones_like(t),))[1]

    def marginal_prob(self, x: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Mean [B, ...] and std [B] of p_0t(x_t | x_0 = x)."""
        alpha, std = self.marginal_coeffs(t)
        return batch_mul(alpha, x), std

    @property
    @abc.abstractmethod
    def prior_std(self) -> float:
        """Standard deviation of the isotropic Gaussian prior p_T."""

    def prior_sampling(self, key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        """Draws x_T ~ N(0, prior_std^2 I) of the given shape [B, ...]."""
        return self.prior_std * jax.random.normal(key, shape)

    def prior_logp(self, z: jax.Array) -> jax.Array:
        """Log-density of the prior for each example of z [B, ...]; returns [B] in nats."""
        d = math.prod(z.shape[1:])
        s2 = self.prior_std**2
        return -0.5 * d * math.log(2 * math.pi * s2) - _per_example_sum(z**2) / (2 * s2)

    def discretize(self, x: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
        """One step x_{i+1} = x_i + f_i + G_i z of the discretized SDE; returns (f [B, ...], G [B]).

        The default is Euler-Maruyama with dt = T / N; VP and VE override it with the DDPM and SMLD
        discretizations.
        """
        dt = self.T / self.N
        drift, diffusion = self.sde(x, t)
        return drift * dt, diffusion * math.sqrt(dt)

    def reverse(self, score_fn: ScoreFn, probability_flow: bool = False) -> ReverseSDE:
        """The reverse-time SDE (or, with probability_flow, the probability-flow ODE)."""
        return ReverseSDE(self, score_fn, probability_flow)

    def noise_level(self, t: float) -> float:
        """EDM's noise level sigma(t) = std(t) / alpha(t) at a time t (float64, on the host).

        x_t / alpha(t) = x_0 + sigma(t) z: every linear SDE is a VE SDE in these coordinates.
        """
        alpha, std = self.marginal_coeffs(np.asarray([t], np.float64))
        return float(np.asarray(std)[0] / np.asarray(alpha)[0])

    def time_of_noise_level(self, sigma: float) -> float:
        """The time t with noise_level(t) = sigma (noise_level is increasing), by bisection on
        [0, 4 T]; the SDEs below override it with their closed forms."""
        lo, hi = 0.0, 4.0 * self.T
        for _ in range(100):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if self.noise_level(mid) < sigma else (lo, mid)
        return 0.5 * (lo + hi)

    def discrete_index(self, t: jax.Array) -> jax.Array:
        """Index i = floor(t (N - 1) / T) in [0, N) of the discrete step at time t (as published)."""
        return jnp.clip(jnp.floor(t * (self.N - 1) / self.T), 0, self.N - 1).astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class ReverseSDE:
    """dx = [f - g^2 score * (1/2 if probability_flow else 1)] dt + g dw-bar (g = 0 for the ODE)."""

    forward: SDE
    score_fn: ScoreFn
    probability_flow: bool = False

    @property
    def N(self) -> int:
        return self.forward.N

    @property
    def T(self) -> float:
        return self.forward.T

    def _reverse(self, f, g, x, t):
        coeff = 0.5 if self.probability_flow else 1.0
        f = f - batch_mul(g**2 * coeff, self.score_fn(x, t))
        g = jnp.zeros_like(g) if self.probability_flow else g
        return f, g

    def sde(self, x: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Reverse drift [B, ...] and diffusion [B], to be integrated backwards in time."""
        return self._reverse(*self.forward.sde(x, t), x, t)

    def discretize(self, x: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(f, G) of the reverse discretization: x_{i-1} = x_i - f + G z."""
        return self._reverse(*self.forward.discretize(x, t), x, t)


@dataclasses.dataclass(frozen=True)
class VPSDE(SDE):
    """Variance preserving SDE: dx = -beta(t) x / 2 dt + sqrt(beta(t)) dw, beta linear in t.

    Its discretization is DDPM's Markov chain with betas linspace(beta_min / N, beta_max / N, N).
    """

    beta_min: float = 0.1
    beta_max: float = 20.0
    N: int = 1000

    def __post_init__(self):
        _check_positive("VPSDE.beta_max", self.beta_max)
        if not 0 <= self.beta_min <= self.beta_max:
            raise ValueError(
                f"VPSDE needs 0 <= beta_min <= beta_max, got {self.beta_min}, {self.beta_max}"
            )
        _check_positive("VPSDE.N", self.N)

    def beta(self, t: jax.Array) -> jax.Array:
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def integrated_beta(self, t):
        """B(t) = int_0^t beta(s) ds (t: a jax or numpy array, or a float on the host)."""
        return self.beta_min * t + 0.5 * t**2 * (self.beta_max - self.beta_min)

    def sde(self, x, t):
        beta = self.beta(t)
        return batch_mul(-0.5 * beta, x), jnp.sqrt(beta)

    def marginal_coeffs(self, t):
        log_alpha = -0.5 * self.integrated_beta(t)
        return jnp.exp(log_alpha), jnp.sqrt(-jnp.expm1(2 * log_alpha))

    def noise_level(self, t: float) -> float:
        """sigma(t) = sqrt(exp(B(t)) - 1)."""
        return math.sqrt(math.expm1(self.integrated_beta(float(t))))

    def time_of_noise_level(self, sigma: float) -> float:
        """B(t) = log(1 + sigma^2), solved for t."""
        return _time_of_integrated_beta(self, math.log1p(float(sigma) ** 2))

    @property
    def prior_std(self) -> float:
        return 1.0

    @cached_property
    def discrete_betas(self) -> np.ndarray:
        return np.linspace(self.beta_min / self.N, self.beta_max / self.N, self.N)

    @cached_property
    def alphas(self) -> np.ndarray:
        return 1.0 - self.discrete_betas

    @cached_property
    def alphas_cumprod(self) -> np.ndarray:
        return np.cumprod(self.alphas)

    @cached_property
    def sqrt_alphas_cumprod(self) -> np.ndarray:
        return np.sqrt(self.alphas_cumprod)

    @cached_property
    def sqrt_1m_alphas_cumprod(self) -> np.ndarray:
        return np.sqrt(1.0 - self.alphas_cumprod)

    def discretize(self, x, t):
        """DDPM: x_{i+1} = sqrt(1 - beta_i) x_i + sqrt(beta_i) z."""
        i = self.discrete_index(t)
        beta = jnp.asarray(self.discrete_betas, x.dtype)[i]
        alpha = jnp.asarray(self.alphas, x.dtype)[i]
        f = batch_mul(jnp.sqrt(alpha), x) - x
        return f, jnp.sqrt(beta)


@dataclasses.dataclass(frozen=True)
class SubVPSDE(SDE):
    """Sub-VP SDE: dx = -beta(t) x / 2 dt + sqrt(beta(t) (1 - exp(-2 B(t)))) dw.

    Same mean as VP; std(t) = 1 - exp(-B(t)), never above the VP std.
    """

    beta_min: float = 0.1
    beta_max: float = 20.0
    N: int = 1000

    def __post_init__(self):
        _check_positive("SubVPSDE.beta_max", self.beta_max)
        if not 0 <= self.beta_min <= self.beta_max:
            raise ValueError(
                f"SubVPSDE needs 0 <= beta_min <= beta_max, got {self.beta_min}, {self.beta_max}"
            )
        _check_positive("SubVPSDE.N", self.N)

    def beta(self, t):
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def integrated_beta(self, t):
        return self.beta_min * t + 0.5 * t**2 * (self.beta_max - self.beta_min)

    def sde(self, x, t):
        beta = self.beta(t)
        discount = -jnp.expm1(-2 * self.integrated_beta(t))
        return batch_mul(-0.5 * beta, x), jnp.sqrt(beta * discount)

    def marginal_coeffs(self, t):
        b = self.integrated_beta(t)
        return jnp.exp(-0.5 * b), -jnp.expm1(-b)

    def noise_level(self, t: float) -> float:
        """sigma(t) = (1 - exp(-B)) / exp(-B / 2)."""
        b = self.integrated_beta(float(t))
        return -math.expm1(-b) / math.exp(-0.5 * b)

    def time_of_noise_level(self, sigma: float) -> float:
        """alpha = (sqrt(sigma^2 + 4) - sigma) / 2 solves sigma alpha = 1 - alpha^2; B = -2 log alpha."""
        sigma = float(sigma)
        alpha = 2.0 / (math.sqrt(sigma**2 + 4.0) + sigma)  # = (sqrt(sigma^2 + 4) - sigma) / 2
        return _time_of_integrated_beta(self, -2.0 * math.log(alpha))

    @property
    def prior_std(self) -> float:
        return 1.0


@dataclasses.dataclass(frozen=True)
class VESDE(SDE):
    """Variance exploding SDE: dx = sqrt(d sigma(t)^2 / dt) dw, sigma(t) = sigma_min (sigma_max / sigma_min)^t.

    Its discretization is SMLD's: noise levels exp(linspace(log sigma_min, log sigma_max, N)).
    As in the published models, marginal std is sigma(t), not the exact sqrt(sigma(t)^2 - sigma_min^2):
    equivalently, the t = 0 distribution is taken to be the data smoothed by N(0, sigma_min^2).
    """

    sigma_min: float = 0.01
    sigma_max: float = 50.0
    N: int = 1000

    def __post_init__(self):
        _check_positive("VESDE.sigma_min", self.sigma_min)
        if not self.sigma_max > self.sigma_min:
            raise ValueError(
                f"VESDE needs sigma_max > sigma_min, got {self.sigma_max} <= {self.sigma_min}"
            )
        _check_positive("VESDE.N", self.N)

    def sigma(self, t):
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def sde(self, x, t):
        sigma = self.sigma(t)
        diffusion = sigma * math.sqrt(2 * (math.log(self.sigma_max) - math.log(self.sigma_min)))
        return jnp.zeros_like(x), diffusion

    def marginal_coeffs(self, t):
        return jnp.ones_like(t), self.sigma(t)

    def noise_level(self, t: float) -> float:
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** float(t)

    def time_of_noise_level(self, sigma: float) -> float:
        return math.log(float(sigma) / self.sigma_min) / math.log(self.sigma_max / self.sigma_min)

    @property
    def prior_std(self) -> float:
        return self.sigma_max

    @cached_property
    def discrete_sigmas(self) -> np.ndarray:
        return np.exp(np.linspace(np.log(self.sigma_min), np.log(self.sigma_max), self.N))

    def discretize(self, x, t):
        """SMLD: x_{i+1} = x_i + sqrt(sigma_{i+1}^2 - sigma_i^2) z."""
        i = self.discrete_index(t)
        sigmas = jnp.asarray(self.discrete_sigmas, x.dtype)
        sigma = sigmas[i]
        adjacent = jnp.where(i == 0, jnp.zeros_like(sigma), sigmas[jnp.maximum(i - 1, 0)])
        return jnp.zeros_like(x), jnp.sqrt(sigma**2 - adjacent**2)


PATHS = ("linear", "cosine")


@dataclasses.dataclass(frozen=True)
class FlowPath(SDE):
    """The Gaussian probability path of flow matching, x_t = a(t) x_0 + s(t) eps, as an SDE.

    'linear' (rectified flow): a = 1 - t, s = t; 'cosine': a = cos(pi t / 2), s = sin(pi t / 2).
    The SDE with these marginals has f = a' / a and g^2 = 2 s (s' - f s): for 'linear',
    f = -1 / (1 - t) and g^2 = 2 t / (1 - t); for 'cosine', f = -(pi / 2) tan(pi t / 2) = -g^2 / 2.
    Both blow up at t = 1 (a = 0), so time ends at T = t_max < 1, where a(T) is negligible and
    the prior is taken as N(0, I). A network predicts the velocity v = a' x_0 + s' eps
    (linear: eps - x_0); score_sde.score_fn converts it.
    """

    path: str = "linear"
    t_max: float = 0.999
    N: int = 1000

    def __post_init__(self):
        if self.path not in PATHS:
            raise ValueError(f"FlowPath.path must be one of {PATHS}, got {self.path!r}")
        if not 0.5 < self.t_max < 1.0:
            raise ValueError(f"FlowPath.t_max must lie in (0.5, 1), got {self.t_max!r}")
        _check_positive("FlowPath.N", self.N)

    @property
    def T(self) -> float:
        return self.t_max

    def marginal_coeffs(self, t):
        if self.path == "linear":
            return 1.0 - t, t
        return jnp.cos(0.5 * math.pi * t), jnp.sin(0.5 * math.pi * t)

    def coeff_derivatives(self, t):
        """(a'(t), s'(t)), each shaped like t: the velocity is v = a' x_0 + s' eps."""
        if self.path == "linear":
            return -jnp.ones_like(t), jnp.ones_like(t)
        half_pi = 0.5 * math.pi
        return -half_pi * jnp.sin(half_pi * t), half_pi * jnp.cos(half_pi * t)

    def sde(self, x, t):
        if self.path == "linear":
            f, g2 = -1.0 / (1.0 - t), 2.0 * t / (1.0 - t)
        else:
            f = -0.5 * math.pi * jnp.tan(0.5 * math.pi * t)
            g2 = -2.0 * f
        return batch_mul(f, x), jnp.sqrt(g2)

    def noise_level(self, t: float) -> float:
        """sigma = s / a: t / (1 - t) (linear), tan(pi t / 2) (cosine)."""
        t = float(t)
        return t / (1.0 - t) if self.path == "linear" else math.tan(0.5 * math.pi * t)

    def time_of_noise_level(self, sigma: float) -> float:
        sigma = float(sigma)
        return (
            sigma / (1.0 + sigma) if self.path == "linear" else math.atan(sigma) / (0.5 * math.pi)
        )

    @property
    def prior_std(self) -> float:
        return 1.0


def _time_of_integrated_beta(sde: VPSDE | SubVPSDE, b: float) -> float:
    """The t >= 0 with beta_min t + (beta_max - beta_min) t^2 / 2 = b."""
    slope = sde.beta_max - sde.beta_min
    if slope == 0:
        return b / sde.beta_min
    return 2.0 * b / (sde.beta_min + math.sqrt(sde.beta_min**2 + 2.0 * slope * b))


def get_sde(name: str, **kwargs) -> SDE:
    """Builds an SDE from its config name: 'vpsde', 'subvpsde', 'vesde', or the flow-matching paths
    'flow' (linear) and 'cosine_flow' (case-insensitive)."""
    match name.lower():
        case "vpsde" | "vp":
            return VPSDE(**kwargs)
        case "subvpsde" | "subvp" | "sub-vp":
            return SubVPSDE(**kwargs)
        case "vesde" | "ve":
            return VESDE(**kwargs)
        case "flow" | "linear_flow":
            return FlowPath("linear", **kwargs)
        case "cosine_flow":
            return FlowPath("cosine", **kwargs)
        case _:
            raise ValueError(
                f"unknown SDE {name!r}; valid names: 'vpsde', 'subvpsde', 'vesde', 'flow', "
                "'cosine_flow'"
            )
