"""EDM2's post-hoc EMA (score_sde.phema) against closed forms and direct computation: std <->
gamma, the profiles' inner products against quadrature, the per-step update against the
closed-form weights, and a profile tracked directly against its reconstruction from snapshots of
two other widths."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import integrate

from score_sde import phema

STDS = [0.01, 0.05, 0.08, 0.1, 0.2, 0.28]


def _p(tau: float, t: float, g: float) -> float:
    """The profile p_{t,g}(tau), 0 < tau <= t."""
    return (g + 1) * tau**g / t ** (g + 1)


def _quad(f, a: float, b: float, *args) -> float:
    return integrate.quad(f, a, b, args=args, epsabs=0, epsrel=1e-12, limit=200)[0]


def test_std_and_gamma_are_the_closed_form_and_its_inverse():
    g = phema.std_to_gamma(STDS)
    assert g.shape == (6,) and np.all(g > 0) and np.all(np.diff(g) < 0)  # wider -> smaller gamma
    np.testing.assert_allclose(phema.gamma_to_std(g), STDS, rtol=1e-12)
    # the definition: the standard deviation of the profile at t = 1, by quadrature
    for std, gamma in zip(STDS, g, strict=True):
        mean = _quad(lambda u, g: u * _p(u, 1.0, g), 0, 1, gamma)
        var = _quad(lambda u, g, m: (u - m) ** 2 * _p(u, 1.0, g), 0, 1, gamma, mean)
        np.testing.assert_allclose(np.sqrt(var), std, rtol=1e-8)
    # EDM2's two defaults (paper, Sec. 3.1: sigma_rel 0.05 and 0.10 <-> gamma 16.97 and 6.94)
    np.testing.assert_allclose(phema.std_to_gamma([0.05, 0.1]), [16.97, 6.94], atol=0.005)
    np.testing.assert_allclose(phema.gamma_to_std(0.0), phema.MAX_STD)
    for bad in (0.0, -0.1, phema.MAX_STD, 0.3, np.nan):
        with pytest.raises(ValueError, match="must lie in"):
            phema.std_to_gamma(bad)


@pytest.mark.parametrize("t_a, t_b", [(300.0, 1000.0), (1000.0, 1000.0), (1000.0, 70.0)])
def test_inner_products_equal_quadrature(t_a, t_b):
    for g_a, g_b in [(6.94, 16.97), (0.5, 3.0), (40.0, 2.0)]:
        args = (t_a, g_a, t_b, g_b)
        want = _quad(lambda u, *a: _p(u, *a[:2]) * _p(u, *a[2:]), 0, min(t_a, t_b), *args)
        np.testing.assert_allclose(phema.profile_dot(t_a, g_a, t_b, g_b), want, rtol=1e-9)
        # and the discrete EMA weights (piecewise-constant profiles) give it as a sum over steps
        w_a = np.pad(phema.profile_weights(int(t_a), g_a), (0, int(max(t_a, t_b) - t_a)))
        w_b = np.pad(phema.profile_weights(int(t_b), g_b), (0, int(max(t_a, t_b) - t_b)))
        assert np.isclose(np.sum(w_a * w_b), want, rtol=0.05)  # a Riemann sum of the integral


def test_the_per_step_update_weighs_each_step_by_the_closed_form():
    """ema_t = beta(t) ema + (1 - beta(t)) theta_t from theta = one-hot steps: the EMA's entries
    are the weights (i^(g+1) - (i-1)^(g+1)) / T^(g+1), which integrate the profile over (i-1, i];
    in float64 by hand, and through the optax tracker in float32."""
    T, gamma = 60, float(phema.std_to_gamma(0.1))
    w = phema.profile_weights(T, gamma)
    np.testing.assert_allclose(w.sum(), 1.0, rtol=1e-12)
    quad = [_quad(_p, i - 1, i, T, gamma) for i in range(1, T + 1)]
    np.testing.assert_allclose(w, quad, rtol=1e-9)
    ema = np.zeros(T)
    for t in range(1, T + 1):
        b = (1 - 1 / t) ** (gamma + 1)
        ema = b * ema + (1 - b) * np.eye(T)[t - 1]
    np.testing.assert_allclose(ema, w, rtol=1e-12, atol=1e-300)
    # the tracker: params walk through the one-hot vectors (updates = e_t - params)
    tx = phema.track([0.1])
    state = tx.init(jnp.zeros(T))
    params = jnp.zeros(T)
    for t in range(T):
        target = jnp.eye(T)[t]
        _, state = tx.update(target - params, state, params)
        params = target
    (tracked,) = phema.emas(state)
    np.testing.assert_allclose(np.asarray(tracked), w, rtol=2e-5, atol=1e-9)
    assert int(state.t) == T


def test_beta_keeps_its_precision_in_float32_at_large_steps():
    gamma = float(phema.std_to_gamma(0.05))
    for t in (1e3, 1e6, 1e8):
        keep, take = phema.beta(jnp.float32(t), gamma)
        exact = -np.expm1((gamma + 1) * np.log1p(-1 / t))
        np.testing.assert_allclose(float(take), exact, rtol=1e-5)
        np.testing.assert_allclose(float(keep), 1 - exact, rtol=1e-6)
    keep, take = phema.beta(jnp.float32(1.0), gamma)  # the first update takes the params whole
    assert float(keep) == 0.0 and float(take) == 1.0


def test_a_snapshot_profile_is_reconstructed_exactly_and_the_fit_error_is_the_integral():
    t, s = [200, 400, 600, 200, 400, 600], [0.05] * 3 + [0.1] * 3
    x = phema.coefficients(t, s, [400], [0.1])  # one of the snapshots: itself, weight 1
    np.testing.assert_allclose(x[:, 0], np.eye(6)[4], atol=1e-8)
    assert phema.fit_error(t, s, [400], [0.1], x)[0] < 1e-6
    x = phema.coefficients(t, s, [600, 600], [0.08, 0.2])
    err = phema.fit_error(t, s, [600, 600], [0.08, 0.2], x)
    grid = np.linspace(0, 600, 600_001)[1:]
    for m, std in enumerate((0.08, 0.2)):
        g = phema.std_to_gamma(s)
        fit = sum(
            x[k, m] * np.where(grid <= t[k], (g[k] + 1) * grid ** g[k] / t[k] ** (g[k] + 1), 0)
            for k in range(6)
        )
        go = phema.std_to_gamma(std)
        target = (go + 1) * grid**go / 600 ** (go + 1)
        ratio = np.sqrt(np.trapezoid((fit - target) ** 2, grid) / np.trapezoid(target**2, grid))
        np.testing.assert_allclose(err[m], ratio, rtol=1e-3)
    assert err[1] > err[0]  # 0.2 is far outside the two tracked widths


def _trajectory(T: int, D: int, seed: int = 0) -> np.ndarray:
    """[T, D] float32: a random walk from 0, parameters theta_1 .. theta_T (no mean or drift
    that a reconstruction would get right for free)."""
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.normal(size=(T, D)), axis=0).astype(np.float32) * 0.01


def test_a_directly_tracked_profile_equals_its_reconstruction_from_two_others():
    """stds 0.05 and 0.1 snapshotted every 50 of 2,000 steps reconstruct the 0.08 EMA tracked
    beside them (all three by the float32 tracker in one scan) to relative L2 <= 1e-3."""
    T, every, D = 2000, 50, 256
    theta = jnp.asarray(_trajectory(T, D))
    tx = phema.track([0.05, 0.1, 0.08])

    def step(carry, target):
        params, state = carry
        _, state = tx.update(target - params, state, params)
        return (target, state), phema.emas(state)

    zero = jnp.zeros(D)
    _, emas = jax.jit(lambda th: jax.lax.scan(step, (zero, tx.init(zero)), th))(theta)
    emas = [np.asarray(e) for e in emas]  # 3 x [T, D]: after steps 1 .. T
    steps = np.arange(every, T + 1, every)
    snap_t = [int(s) for s in steps] * 2
    snap_std = [0.05] * len(steps) + [0.1] * len(steps)
    snaps = [emas[0][s - 1] for s in steps] + [emas[1][s - 1] for s in steps]
    x = phema.coefficients(snap_t, snap_std, [T], [0.08])
    rebuilt = phema.combine(x[:, 0], snaps)
    direct = emas[2][-1]
    assert rebuilt.dtype == np.float32 and rebuilt.shape == (D,)
    rel = np.linalg.norm(rebuilt - direct) / np.linalg.norm(direct)
    assert rel <= 1e-3, rel
    # the closed form says how close: the profile's fit error bounds what the data allow
    assert phema.fit_error(snap_t, snap_std, [T], [0.08], x)[0] < 0.01
    # not vacuous: the tracked widths themselves miss it by far more than the bound
    for other in (emas[0][-1], emas[1][-1]):
        assert np.linalg.norm(other - direct) / np.linalg.norm(direct) > 0.02


def test_the_tracker_chains_after_an_optimizer_and_leaves_its_updates_alone():
    params = {"w": jnp.ones(3), "b": jnp.zeros(2, jnp.bfloat16)}
    adam = optax.adam(0.1)
    tx = optax.chain(adam, phema.track([0.05, 0.1]))
    grads = {"w": jnp.array([1.0, -2.0, 3.0]), "b": jnp.ones(2, jnp.bfloat16)}
    got, state = tx.update(grads, tx.init(params), params)
    want, _ = adam.update(grads, adam.init(params), params)
    jax.tree.map(np.testing.assert_array_equal, got, want)
    new = optax.apply_updates(params, want)
    for ema in phema.emas(state):  # step 1: beta = 0, each EMA is the updated params
        jax.tree.map(np.testing.assert_array_equal, ema, new)
        assert ema["b"].dtype == jnp.bfloat16
    assert phema.emas(adam.init(params)) == ()
    with pytest.raises(ValueError, match="needs the parameters"):
        tx.update(grads, state)
