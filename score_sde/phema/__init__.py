"""EDM2's post-hoc EMA (Karras et al. 2024, "Analyzing and Improving the Training Dynamics of
Diffusion Models", Sec. 3 and App. C): power-function EMA profiles, tracked during training and
recombined afterwards into an EMA of any length.

The EMA at step t with exponent gamma > 0 averages the parameters theta(tau) of steps tau <= t with
the profile
    p_{t,g}(tau) = (g + 1) tau^g / t^(g + 1),   0 < tau <= t        (integral 1)
whose relative width (standard deviation / t) is std = sqrt((g + 1) / ((g + 2)^2 (g + 3))):
std in (0, sqrt(1/12)) <-> gamma in (0, inf). Per step t = 1, 2, ... (theta_t: the parameters after
update t)
    ema_t = beta(t) ema_{t-1} + (1 - beta(t)) theta_t,     beta(t) = (1 - 1/t)^(g + 1),
which weighs theta_i by exactly (i^(g+1) - (i-1)^(g+1)) / t^(g+1) = integral of p_{t,g} over
(i-1, i]: the discrete EMA is the continuous profile applied to piecewise-constant parameters.
Post hoc, snapshots ema_k (profiles p_k = p_{t_k,g_k}) combine into sum_k x_k ema_k, whose profile
sum_k x_k p_k is the least-squares fit of a target p_{t,g}: A x = b with A_jk = <p_j, p_k>,
b_j = <p_j, p_{t,g}> in closed form (`profile_dot`).

    tx = optax.chain(adam, phema.track((0.05, 0.1)))     # EMAs in the optimizer state
    ema_005, ema_010 = phema.emas(opt_state)
    x = phema.coefficients(snap_steps, snap_stds, [t], [0.08])      # [K, 1]
    ema_008 = phema.combine(x[:, 0], snapshot_trees)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpy.typing import ArrayLike

MAX_STD = math.sqrt(1.0 / 12.0)  # gamma -> 0: the flat profile (every step weighs the same)


def gamma_to_std(gamma: ArrayLike) -> np.ndarray:
    """std = sqrt((g + 1) / ((g + 2)^2 (g + 3))), float64, shape of `gamma`."""
    g = np.asarray(gamma, np.float64)
    return np.sqrt((g + 1) / ((g + 2) ** 2 * (g + 3)))


def std_to_gamma(std: ArrayLike) -> np.ndarray:
    """The exponent gamma > 0 of relative width `std` in (0, MAX_STD), float64, shape of `std`:
    the largest real root of g^3 + 7 g^2 + (16 - s) g + (12 - s) = 0, s = std^-2 (gamma_to_std
    squared and inverted)."""
    s = np.asarray(std, np.float64)
    if not np.all((s > 0) & (s < MAX_STD)):
        raise ValueError(
            f"EMA std {s.tolist()} must lie in (0, {MAX_STD:.4f}) (sqrt(1/12): flat profile)"
        )
    out = [np.roots([1.0, 7.0, 16.0 - v, 12.0 - v]).real.max() for v in s.reshape(-1) ** -2.0]
    return np.asarray(out, np.float64).reshape(s.shape)


def beta(t: jax.Array, gamma: float) -> tuple[jax.Array, jax.Array]:
    """(beta(t), 1 - beta(t)) with beta(t) = (1 - 1/t)^(gamma + 1), t >= 1 the step count after
    the update (t = 1: beta 0, the EMA starts at the first updated parameters). Through
    log1p/expm1, so 1 - beta ~ (gamma + 1)/t keeps its precision in float32 at large t."""
    log_beta = (gamma + 1.0) * jnp.log1p(-1.0 / t)
    return jnp.exp(log_beta), -jnp.expm1(log_beta)


def profile_weights(t: int, gamma: float) -> np.ndarray:
    """[t] float64: the weight of theta_1 .. theta_t in the per-step EMA at step t,
    (i^(g+1) - (i-1)^(g+1)) / t^(g+1) (sums to 1)."""
    i = np.arange(1, t + 1, dtype=np.float64)
    return ((i / t) ** (gamma + 1) - ((i - 1) / t) ** (gamma + 1)).astype(np.float64)


def profile_dot(t_a: ArrayLike, g_a: ArrayLike, t_b: ArrayLike, g_b: ArrayLike) -> np.ndarray:
    """<p_{t_a,g_a}, p_{t_b,g_b}> = integral of their product, broadcast, float64:
    (g_a + 1)(g_b + 1) / (g_a + g_b + 1) * (t_min / t_max)^g_max' / t_max, where g_max' is the
    exponent of the longer profile (the one at t_max)."""
    t_a, g_a, t_b, g_b = (np.asarray(v, np.float64) for v in (t_a, g_a, t_b, g_b))
    g_long = np.where(t_a < t_b, g_b, g_a)
    t_lo, t_hi = np.minimum(t_a, t_b), np.maximum(t_a, t_b)
    return (g_a + 1) * (g_b + 1) / (g_a + g_b + 1) * (t_lo / t_hi) ** g_long / t_hi


def _gram(snap_t, snap_std, out_t, out_std) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A [K, K] = <p_j, p_k>, B [K, M] = <p_j, p_out_m>, C [M] = <p_out_m, p_out_m>)."""
    t, g = np.asarray(snap_t, np.float64), std_to_gamma(snap_std)
    to, go = np.asarray(out_t, np.float64), std_to_gamma(out_std)
    if t.shape != g.shape or to.shape != go.shape or t.ndim != 1 or to.ndim != 1:
        raise ValueError(
            f"snapshot steps {t.shape} and stds {g.shape}, target steps {to.shape} and stds "
            f"{go.shape} must be matching 1-D lists"
        )
    A = profile_dot(t[:, None], g[:, None], t[None, :], g[None, :])
    B = profile_dot(t[:, None], g[:, None], to[None, :], go[None, :])
    return A, B, profile_dot(to, go, to, go)


def coefficients(
    snap_t: Sequence[float],
    snap_std: Sequence[float],
    out_t: Sequence[float],
    out_std: Sequence[float],
) -> np.ndarray:
    """X [K, M] float64: column m weighs the K snapshots (steps snap_t [K], widths snap_std [K])
    so that sum_k X[k, m] p_k is the least-squares fit of the profile at out_t[m], out_std[m]:
    A X = B with A = <p_j, p_k> [K, K], B = <p_j, p_out_m> [K, M] (lstsq: robust to nearly
    dependent snapshots). Steps may be in any unit (the solution is scale-free)."""
    A, B, _ = _gram(snap_t, snap_std, out_t, out_std)
    return np.linalg.lstsq(A, B, rcond=None)[0]


def fit_error(
    snap_t: Sequence[float],
    snap_std: Sequence[float],
    out_t: Sequence[float],
    out_std: Sequence[float],
    x: np.ndarray,
) -> np.ndarray:
    """[M]: the relative L2 error ||sum_k x[k, m] p_k - p_m|| / ||p_m|| of each fitted profile
    (`coefficients`' arguments and result X), sqrt(x'Ax - 2x'b + <p, p>) / sqrt(<p, p>)."""
    A, B, C = _gram(snap_t, snap_std, out_t, out_std)
    sq = np.einsum("km,kl,lm->m", x, A, x) - 2 * np.einsum("km,km->m", x, B) + C
    return np.sqrt(np.maximum(sq, 0.0) / C)


def combine(x: ArrayLike, trees: Iterable[Any]) -> Any:
    """sum_k x[k] trees[k], accumulated in float64 (the coefficients alternate in sign and may be
    large) and returned in the first tree's dtypes. `trees` may be a generator: one is held at a
    time."""
    total, like = None, None
    for xk, tree in zip(np.asarray(x, np.float64).tolist(), trees, strict=True):
        term = jax.tree.map(lambda a, xk=float(xk): np.asarray(a, np.float64) * xk, tree)
        total = term if total is None else jax.tree.map(np.add, total, term)
        like = like if like is not None else jax.tree.map(lambda a: np.asarray(a).dtype, tree)
    if total is None:
        raise ValueError("no snapshots to combine")
    return jax.tree.map(lambda a, d: a.astype(d), total, like)


class PhemaState(NamedTuple):
    """The tracker's optimizer state: its step count t and one EMA per std (params' pytrees)."""

    t: jax.Array  # int32 []: updates so far
    emas: tuple[Any, ...]


def track(stds: Sequence[float]) -> optax.GradientTransformation:
    """An optax transformation that passes updates through unchanged and keeps one power-function
    EMA per std of the parameters after the update (params + updates): chain it last,
    `optax.chain(tx, track(stds))`, and read the EMAs with `emas(opt_state)`."""
    gammas = tuple(float(g) for g in std_to_gamma(np.asarray(stds, np.float64)))

    def init(params):
        copies = tuple(jax.tree.map(jnp.array, params) for _ in gammas)
        return PhemaState(jnp.zeros((), jnp.int32), copies)

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("phema.track needs the parameters: call tx.update(g, state, params)")
        new = optax.apply_updates(params, updates)
        t = (state.t + 1).astype(jnp.float32)

        def average(ema, g):
            keep, take = beta(t, g)
            return jax.tree.map(lambda e, p: (keep * e + take * p).astype(e.dtype), ema, new)

        averaged = tuple(average(e, g) for g, e in zip(gammas, state.emas, strict=True))
        return updates, PhemaState(state.t + 1, averaged)

    return optax.GradientTransformation(init, update)


def emas(opt_state: Any) -> tuple[Any, ...]:
    """The EMAs (one params pytree per std of `track`) in an optimizer state holding one
    PhemaState; () when it holds none."""
    found = [
        s
        for s in jax.tree.leaves(opt_state, is_leaf=lambda s: isinstance(s, PhemaState))
        if isinstance(s, PhemaState)
    ]
    if len(found) > 1:
        raise ValueError(f"the optimizer state holds {len(found)} phema trackers; chain one")
    return found[0].emas if found else ()
