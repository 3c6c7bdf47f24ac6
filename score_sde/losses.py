"""Training objectives: denoising score matching in continuous time, and the DDPM / SMLD losses.

Every loss is a pure function `loss_fn(params, key, batch) -> scalar` with
`batch = {"x": [B, ...] in model space, "label": optional int [B]}`.

Continuous DSM (Song et al. 2021, eq. 7), with x_t = alpha(t) x_0 + std(t) z:
    L = E_t E_{x_0, z} [ lambda(t) || s(x_t, t) + z / std(t) ||^2 ],  t ~ U(eps, T),
lambda(t) = std(t)^2 by default, or g(t)^2 with likelihood weighting (Song et al. 2021b), whose
estimate can also be importance-sampled: t ~ q(t) proportional to g(t)^2 / std(t)^2, reweighted by
1 / q(t) so the expectation is unchanged and the variance much lower.
Sums over data dimensions carry the factor 1/2 of the published code; `reduce_mean` averages instead.

Flow matching (Lipman et al. 2023; Liu et al. 2023) on a flow path (sde.FlowPath) regresses the
velocity instead: L = E_t E_{x_0, z} || v(x_t, t) - (alpha' x_0 + std' z) ||^2.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from score_sde.names import TIME_SAMPLINGS
from score_sde.score_fn import (
    ApplyFn,
    Preconditioning,
    get_denoiser,
    get_score_fn,
    get_velocity_fn,
)
from score_sde.sde import SDE, VESDE, VPSDE, FlowPath, batch_mul


def _reducer(reduce_mean: bool):
    if reduce_mean:
        return lambda v: jnp.mean(v.reshape(v.shape[0], -1), axis=-1)
    return lambda v: 0.5 * jnp.sum(v.reshape(v.shape[0], -1), axis=-1)


class ImportanceTimeSampler:
    """Samples t on [eps, T] with density q(t) ~ g(t)^2 / std(t)^2 (tabulated, exact density).

    The table is piecewise linear in the cumulative mass on a log-spaced grid, so the density of the
    draws is known exactly (piecewise constant) and 1 / q(t) reweighting is unbiased.
    """

    def __init__(self, sde: SDE, eps: float, num_points: int = 4096):
        with jax.ensure_compile_time_eval():
            grid = np.geomspace(eps, sde.T, num_points)
            tt = jnp.asarray(grid, jnp.float32)
            g2 = sde.sde(jnp.zeros((num_points, 1)), tt)[1] ** 2
            std = sde.marginal_coeffs(tt)[1]
            w = np.asarray(g2 / std**2, np.float64)
        widths = np.diff(grid)
        mass = 0.5 * (w[1:] + w[:-1]) * widths
        self.grid = grid[:-1].astype(np.float32)
        self.widths = widths.astype(np.float32)
        self.cdf = np.concatenate([[0.0], np.cumsum(mass)])
        self.total = float(self.cdf[-1])
        self.density = (mass / self.total / widths).astype(np.float32)  # q on each interval
        self.cdf = (self.cdf / self.total).astype(np.float32)
        self.mass = (mass / self.total).astype(np.float32)

    def __call__(self, key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
        """Returns t [n] and q(t) [n]."""
        ki, ku = jax.random.split(key)
        u = jax.random.uniform(ki, (n,))
        i = jnp.clip(
            jnp.searchsorted(jnp.asarray(self.cdf), u, side="right") - 1, 0, len(self.mass) - 1
        )
        frac = jax.random.uniform(ku, (n,))
        t = jnp.asarray(self.grid)[i] + frac * jnp.asarray(self.widths)[i]
        return t, jnp.asarray(self.density)[i]


def get_sde_loss_fn(
    sde: SDE,
    score_apply,
    *,
    train: bool = True,
    reduce_mean: bool = False,
    likelihood_weighting: bool = False,
    importance_weighting: bool = False,
    eps: float = 1e-5,
):
    """Continuous-time DSM loss for `score_apply(params, x, t, *, train, rng, class_labels)`."""
    if importance_weighting and not likelihood_weighting:
        raise ValueError(
            "importance_weighting samples t for the likelihood weighting; "
            "set likelihood_weighting=True as well (config.training.likelihood_weighting)"
        )
    if not 0 < eps < sde.T:
        raise ValueError(f"eps must lie in (0, T={sde.T}), got {eps!r}")
    reduce = _reducer(reduce_mean)
    time_sampler = ImportanceTimeSampler(sde, eps) if importance_weighting else None

    def loss_fn(params, key, batch):
        x = batch["x"]
        b = x.shape[0]
        k_t, k_z, k_drop = jax.random.split(key, 3)
        if time_sampler is not None:
            t, q = time_sampler(k_t, b)
        else:
            t = jax.random.uniform(k_t, (b,), minval=eps, maxval=sde.T)
        z = jax.random.normal(k_z, x.shape, x.dtype)
        mean, std = sde.marginal_prob(x, t)
        xt = mean + batch_mul(std, z)
        score = score_apply(params, xt, t, train=train, rng=k_drop, class_labels=batch.get("label"))
        residual = batch_mul(std, score) + z  # std * (s - grad log p_0t)
        losses = reduce(jnp.square(residual))
        if likelihood_weighting:
            g2 = sde.sde(jnp.zeros_like(x), t)[1] ** 2
            losses = losses * g2 / std**2
            if time_sampler is not None:
                losses = losses / (q * (sde.T - eps))
        return jnp.mean(losses)

    return loss_fn


def flow_times(
    key: jax.Array,
    n: int,
    sde: SDE,
    *,
    eps: float,
    time_sampling: str = "uniform",
    logit_mean: float = 0.0,
    logit_std: float = 1.0,
) -> jax.Array:
    """Training times t [n] on [eps, T]: uniform, or logit-normal (Esser et al. 2024),
    t = eps + (T - eps) sigmoid(logit_mean + logit_std n), n ~ N(0, 1)."""
    if time_sampling == "uniform":
        return jax.random.uniform(key, (n,), minval=eps, maxval=sde.T)
    u = jax.nn.sigmoid(logit_mean + logit_std * jax.random.normal(key, (n,)))
    return eps + (sde.T - eps) * u


def get_flow_matching_loss_fn(
    sde: FlowPath,
    apply_fn: ApplyFn,
    *,
    train: bool = True,
    reduce_mean: bool = True,
    time_sampling: str = "uniform",
    logit_mean: float = 0.0,
    logit_std: float = 1.0,
    eps: float = 1e-5,
):
    """Conditional flow matching: || v(alpha x_0 + std z, t) - (alpha' x_0 + std' z) ||^2 with the
    network's velocity v (score_fn.get_velocity_fn), t from `flow_times`. Its minimizer is the
    marginal velocity E[alpha' x_0 + std' z | x_t] (GaussianMixture.velocity_fn for a mixture)."""
    if time_sampling not in TIME_SAMPLINGS:
        raise ValueError(
            f"config.training.time_sampling ({time_sampling!r}) must be one of {TIME_SAMPLINGS}"
        )
    if not 0 < eps < sde.T:
        raise ValueError(f"eps must lie in (0, T={sde.T}), got {eps!r}")
    velocity_apply = get_velocity_fn(sde, apply_fn)
    reduce = _reducer(reduce_mean)
    times = dict(eps=eps, time_sampling=time_sampling, logit_mean=logit_mean, logit_std=logit_std)

    def loss_fn(params, key, batch):
        x = batch["x"]
        k_t, k_z, k_drop = jax.random.split(key, 3)
        t = flow_times(k_t, x.shape[0], sde, **times).astype(x.dtype)
        z = jax.random.normal(k_z, x.shape, x.dtype)
        alpha, std = sde.marginal_coeffs(t)
        d_alpha, d_std = sde.coeff_derivatives(t)
        xt = batch_mul(alpha, x) + batch_mul(std, z)
        target = batch_mul(d_alpha, x) + batch_mul(d_std, z)
        v = velocity_apply(params, xt, t, train=train, rng=k_drop, class_labels=batch.get("label"))
        return jnp.mean(reduce(jnp.square(v - target)))

    return loss_fn


def get_ddpm_loss_fn(
    sde: VPSDE, apply_fn: ApplyFn, *, train: bool = True, reduce_mean: bool = True
):
    """DDPM (Ho et al. 2020): || eps_theta(sqrt(abar_i) x + sqrt(1 - abar_i) z, i) - z ||^2, i ~ U{0..N-1}."""
    if not isinstance(sde, VPSDE):
        raise ValueError(f"the DDPM loss needs a VPSDE, got {type(sde).__name__}")
    reduce = _reducer(reduce_mean)

    def loss_fn(params, key, batch):
        x = batch["x"]
        k_i, k_z, k_drop = jax.random.split(key, 3)
        i = jax.random.randint(k_i, (x.shape[0],), 0, sde.N)
        z = jax.random.normal(k_z, x.shape, x.dtype)
        xt = batch_mul(jnp.asarray(sde.sqrt_alphas_cumprod, x.dtype)[i], x) + batch_mul(
            jnp.asarray(sde.sqrt_1m_alphas_cumprod, x.dtype)[i], z
        )
        out = apply_fn(
            params, xt, i.astype(x.dtype), train=train, rng=k_drop, class_labels=batch.get("label")
        )
        return jnp.mean(reduce(jnp.square(out - z)))

    return loss_fn


def get_smld_loss_fn(
    sde: VESDE, apply_fn: ApplyFn, *, train: bool = True, reduce_mean: bool = False
):
    """SMLD (Song & Ermon 2019): sigma_i^2 || s_theta(x + sigma_i z, i) + z / sigma_i ||^2.

    Label i indexes the noise levels in descending order, as the NCSN models expect.
    """
    if not isinstance(sde, VESDE):
        raise ValueError(f"the SMLD loss needs a VESDE, got {type(sde).__name__}")
    reduce = _reducer(reduce_mean)

    def loss_fn(params, key, batch):
        x = batch["x"]
        k_i, k_z, k_drop = jax.random.split(key, 3)
        i = jax.random.randint(k_i, (x.shape[0],), 0, sde.N)
        sigmas = jnp.asarray(sde.discrete_sigmas[::-1].copy(), x.dtype)[i]
        noise = batch_mul(sigmas, jax.random.normal(k_z, x.shape, x.dtype))
        score = apply_fn(
            params,
            x + noise,
            i.astype(x.dtype),
            train=train,
            rng=k_drop,
            class_labels=batch.get("label"),
        )
        target = batch_mul(-1.0 / sigmas**2, noise)
        return jnp.mean(reduce(jnp.square(score - target)) * sigmas**2)

    return loss_fn


def get_edm_loss_fn(
    apply_fn: ApplyFn,
    preconditioning: Preconditioning,
    *,
    train: bool = True,
    reduce_mean: bool = True,
    P_mean: float = -1.2,
    P_std: float = 1.2,
):
    """EDM's loss (Karras et al. 2022, eq. 8 and Table 1), in the scaled coordinates of any SDE:

        L = E_{ln sigma ~ N(P_mean, P_std^2), n ~ N(0, sigma^2 I)} [ lambda(sigma) || D(x_0 + n; sigma) - x_0 ||^2 ],

    D the preconditioned network (score_fn.get_denoiser) and lambda = 1 / c_out(sigma)^2, which
    makes the network's target unit-variance at every sigma; minimized by D = E[x_0 | x_0 + n].
    """
    if not P_std > 0:
        raise ValueError(f"config.training.P_std ({P_std}) must be positive")
    reduce = _reducer(reduce_mean)
    denoise_apply = get_denoiser(apply_fn, preconditioning)

    def loss_fn(params, key, batch):
        x = batch["x"]
        k_s, k_n, k_drop = jax.random.split(key, 3)
        sigma = jnp.exp(P_mean + P_std * jax.random.normal(k_s, (x.shape[0],), x.dtype))
        noisy = x + batch_mul(sigma, jax.random.normal(k_n, x.shape, x.dtype))
        d = denoise_apply(
            params, noisy, sigma, train=train, rng=k_drop, class_labels=batch.get("label")
        )
        weight = preconditioning.coefficients(sigma)[1] ** -2
        return jnp.mean(weight * reduce(jnp.square(d - x)))

    return loss_fn


def get_loss_fn(
    sde: SDE,
    apply_fn: ApplyFn,
    *,
    continuous: bool = True,
    train: bool = True,
    reduce_mean: bool = False,
    likelihood_weighting: bool = False,
    importance_weighting: bool = False,
    eps: float = 1e-5,
    objective: str = "dsm",
    preconditioning: Preconditioning | None = None,
    P_mean: float = -1.2,
    P_std: float = 1.2,
    time_sampling: str = "uniform",
    logit_mean: float = 0.0,
    logit_std: float = 1.0,
):
    """The training loss a config asks for (config.training.{loss, continuous, reduce_mean, ...}):
    objective 'dsm' (denoising score matching, or DDPM / SMLD in discrete time), 'edm' (EDM's
    loss; needs a preconditioning) or 'flow_matching' (needs a flow path)."""
    if objective == "flow_matching":
        if not isinstance(sde, FlowPath) or preconditioning is not None:
            raise ValueError(
                "config.training.loss='flow_matching' trains a velocity network on a flow path: "
                "set config.training.sde to 'flow' or 'cosine_flow' and "
                "config.model.preconditioning='none'"
            )
        if likelihood_weighting or importance_weighting or not continuous:
            raise ValueError(
                "config.training.loss='flow_matching' takes no likelihood or importance "
                "weighting and is continuous-time; set likelihood_weighting=False, "
                "importance_weighting=False, continuous=True"
            )
        return get_flow_matching_loss_fn(
            sde, apply_fn, train=train, reduce_mean=reduce_mean, time_sampling=time_sampling,
            logit_mean=logit_mean, logit_std=logit_std, eps=eps,
        )  # fmt: skip
    if objective == "edm":
        if preconditioning is None:
            raise ValueError(
                "config.training.loss='edm' trains EDM's denoiser: set "
                "config.model.preconditioning to 'edm', 'vp' or 've'"
            )
        return get_edm_loss_fn(
            apply_fn, preconditioning, train=train, reduce_mean=reduce_mean, P_mean=P_mean,
            P_std=P_std
        )  # fmt: skip
    if continuous:
        return get_sde_loss_fn(
            sde,
            get_score_fn(sde, apply_fn, continuous=True, preconditioning=preconditioning),
            train=train,
            reduce_mean=reduce_mean,
            likelihood_weighting=likelihood_weighting,
            importance_weighting=importance_weighting,
            eps=eps,
        )
    if likelihood_weighting or importance_weighting:
        raise ValueError(
            "likelihood weighting applies to continuous training only; set "
            "config.training.continuous=True or likelihood_weighting=False"
        )
    match sde:
        case VPSDE():
            return get_ddpm_loss_fn(sde, apply_fn, train=train, reduce_mean=reduce_mean)
        case VESDE():
            return get_smld_loss_fn(sde, apply_fn, train=train, reduce_mean=reduce_mean)
        case _:
            raise ValueError(
                f"discrete training is defined for VPSDE (DDPM) and VESDE (SMLD), not "
                f"{type(sde).__name__}; set config.training.continuous=True"
            )
