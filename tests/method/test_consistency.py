"""Consistency models against exact answers.

Closed forms: for Gaussian data x_0 ~ N(mu, s^2 I) the probability-flow ODE of the VE SDE is
affine, x~(sigma) - mu proportional to sqrt(s^2 + sigma^2), so the exact consistency function is
    f*(x, sigma) = mu + (x - mu) sqrt((s^2 + sigma_min^2) / (s^2 + sigma^2)),
and one- and two-step consistency samples of f* have closed-form variances. For a Gaussian
mixture the exact score is known, so the exact PF-ODE endpoint of any noisy point is a solve with
the exact score: distillation with the exact score as teacher must learn it.
"""

import glob
import io
import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from score_sde import consistency, fast_sampling, parallel
from score_sde.config import from_config
from score_sde.data.toy_data import toy_density
from score_sde.run import experiment, train
from score_sde.score_fn import Preconditioning, get_denoiser
from score_sde.sde import VESDE, batch_mul
from tests.helpers import REPO
from tests.oracles import mixture_2d

SIGMA_MIN, SIGMA_MAX = 0.002, 80.0
SDE = VESDE(sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX)
MU, S = 0.7, 0.5  # the Gaussian data N(MU, S^2 I)


def exact_f(x, sigma):
    """f*(x [B, D], sigma [B]) of the Gaussian data."""
    scale = jnp.sqrt((S**2 + SIGMA_MIN**2) / (S**2 + sigma**2))
    return MU + batch_mul(scale, x - MU)


def network_of(f, precond: Preconditioning):
    """apply_fn(params, c_in x, c_noise) -> F with c_skip x + c_out F = f(x, sigma) + params x
    (F = 0 where c_out = 0, at sigma_min, where c_skip = 1 and f(x, sigma_min) = x)."""

    def apply_fn(params, x_in, c_noise, *, train=False, rng=None, class_labels=None):
        sigma = jnp.exp(c_noise / 250.0)
        c_skip, c_out, c_in, _ = precond.coefficients(sigma)
        x = batch_mul(1.0 / c_in, x_in)
        target = f(x, sigma) + params * x - batch_mul(c_skip, x)
        safe = jnp.where(c_out > 0, c_out, 1.0)
        return batch_mul(jnp.where(c_out > 0, 1.0 / safe, 0.0), target)

    return apply_fn


def gaussian_score_fn(x, t):
    """The exact score of N(MU, S^2 I) under the VE SDE (std = sigma(t))."""
    sigma = SDE.marginal_coeffs(t)[1]
    return batch_mul(-1.0 / (S**2 + sigma**2), x - MU)


def test_the_boundary_condition_holds_for_any_network():
    precond = Preconditioning("consistency", sigma_data=0.5, sigma_min=SIGMA_MIN)
    net = lambda p, x, c, **k: p * jnp.sin(3.0 * x) + 5.0  # anything
    f = get_denoiser(net, precond)
    x = jax.random.normal(jax.random.key(0), (8, 3))
    np.testing.assert_array_equal(f(2.0, x, jnp.full((8,), SIGMA_MIN)), x)
    assert float(jnp.abs(f(2.0, x, jnp.full((8,), 1.0)) - x).max()) > 0.1


def test_curriculum_is_icts():
    """N(k) = min(s0 2^floor(k / K'), s1) + 1, K' = floor(K / (log2 floor(s1 / s0) + 1)): for
    K = 1000, s0 = 10, s1 = 1280 K' = 125 and N doubles from 11 to 1281."""
    k = np.array([0, 124, 125, 250, 374, 500, 625, 750, 875, 999, 5000])
    expected = [11, 11, 21, 41, 41, 161, 321, 641, 1281, 1281, 1281]
    assert list(np.asarray(consistency.num_levels(k, 1000))) == expected
    assert int(consistency.num_levels(4, 10, s0=2, s1=8)) == 5  # K' = floor(10 / 3) = 3: 2 * 2 + 1


def test_karras_levels_and_log_normal_level_probabilities():
    n, pm, ps = 41, -1.1, 2.0
    sig = np.asarray(consistency.karras_sigmas(n, SIGMA_MIN, SIGMA_MAX), np.float64)
    i = np.arange(n)
    by_hand = (
        SIGMA_MIN ** (1 / 7) + i / (n - 1) * (SIGMA_MAX ** (1 / 7) - SIGMA_MIN ** (1 / 7))
    ) ** 7
    np.testing.assert_allclose(sig, by_hand, rtol=1e-5)
    padded = consistency.karras_sigmas(jnp.int32(n), SIGMA_MIN, SIGMA_MAX, size=64)
    np.testing.assert_allclose(padded[:n], sig, rtol=1e-6)
    p = np.asarray(consistency.level_probabilities(padded, n, pm, ps), np.float64)
    assert p.shape == (63,) and np.all(p[n - 1 :] == 0) and p.sum() == pytest.approx(1.0, abs=1e-6)
    # the log-normal's mass between adjacent levels, renormalized over [sigma_min, sigma_max]
    law = stats.lognorm(s=ps, scale=math.exp(pm))
    mass = np.diff(law.cdf(sig))
    np.testing.assert_allclose(p[: n - 1], mass / mass.sum(), rtol=1e-4, atol=1e-7)


def test_pseudo_huber_is_l2_near_zero_and_l1_far():
    a = jnp.zeros((2, 4))
    b = jnp.array([[1e-3, 0, 0, 0], [30.0, 40.0, 0, 0]])
    d = np.asarray(consistency.pseudo_huber(a, b, 0.03))
    assert d[0] == pytest.approx(1e-6 / (2 * 0.03), rel=1e-2)  # ||a - b||^2 / (2 c)
    assert d[1] == pytest.approx(50.0 - 0.03, rel=1e-6)  # ||a - b|| - c
    assert consistency.default_huber_c(3072) == pytest.approx(0.00054 * math.sqrt(3072))


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_consistency_sampling_of_the_exact_function_has_the_closed_form_law(steps):
    """1, 2, 3 jumps of f* (through the sampler's score_fn interface, as a trained model's): the
    samples are N(MU, v) with v from the affine jumps, within Monte-Carlo error."""
    precond = Preconditioning("consistency", sigma_data=0.5, sigma_min=SIGMA_MIN)
    f = get_denoiser(network_of(exact_f, precond), precond)

    def score_fn(x, t):  # the "score" whose Tweedie denoiser is f (VE: alpha = 1, std = sigma)
        sigma = SDE.marginal_coeffs(t)[1]
        return batch_mul(1.0 / sigma**2, f(0.0, x, sigma) - x)

    n, d = 40000, 2
    sampler = fast_sampling.get_sampler(SDE, (n, d), "consistency", num_steps=steps)
    x, nfe = jax.jit(sampler, static_argnums=1)(jax.random.key(0), score_fn)
    levels = fast_sampling.sigma_grid(SDE, steps + 1, "edm")
    taus, lo = levels[:-1], levels[-1]
    gain = lambda s: (S**2 + SIGMA_MIN**2) / (S**2 + s**2)
    v = SIGMA_MAX**2 * gain(taus[0])
    for tau in taus[1:]:
        v = (v + tau**2 - lo**2) * gain(tau)
    x = np.asarray(x, np.float64)
    assert int(nfe) == steps
    np.testing.assert_array_less(np.abs(x.mean(0) - MU), 4.5 * math.sqrt(v / n))
    np.testing.assert_array_less(np.abs(x.var(0) / v - 1), 4.5 * math.sqrt(2 / n))
    assert v == pytest.approx(S**2, rel=0.02)  # and the law is the data's, up to sigma_min


@pytest.mark.parametrize("solver", ["heun", "euler"])
def test_distillation_loss_vanishes_at_the_exact_function(solver):
    """With the exact Gaussian score as teacher the loss at f* is only the teacher step's error
    (Heun: third order, Euler: second), far below that at f* perturbed by 0.05 x; the loss grows
    in both directions."""
    precond = Preconditioning("consistency", sigma_data=0.5, sigma_min=SIGMA_MIN)
    loss_fn = consistency.get_consistency_loss_fn(
        network_of(exact_f, precond), precond, sigma_max=SIGMA_MAX, total_steps=1000,
        teacher=(SDE, gaussian_score_fn), teacher_solver=solver, num_scales=40,
    )  # fmt: skip
    x0 = MU + S * jax.random.normal(jax.random.key(0), (4096, 2))
    f = lambda c: float(loss_fn(c, jax.random.key(1), {"x": x0}))
    at, off = f(0.0), min(f(0.05), f(-0.05))
    assert at < (0.01 if solver == "heun" else 0.1) * off, (at, off)


def _ode_endpoint(score_fn, x, sigma, steps=400):
    """The exact PF-ODE endpoint at sigma_min of x~ [B, D] at sigma [B]: Heun on a geometric grid
    of `steps` levels per example, with the exact score."""
    slope = fast_sampling.ode_slope(SDE, score_fn)
    frac = jnp.linspace(0.0, 1.0, steps)
    grid = jnp.exp(jnp.log(sigma)[None] * (1 - frac)[:, None] + math.log(SIGMA_MIN) * frac[:, None])
    time = lambda s: jnp.log(s / SIGMA_MIN) / math.log(SIGMA_MAX / SIGMA_MIN)

    def body(i, x):
        return fast_sampling.heun_step(
            slope, x, grid[i], grid[i + 1], time(grid[i]), time(grid[i + 1])
        )

    return jax.lax.fori_loop(0, steps - 1, body, x)


def _toy_cm_config(**training):
    from configs.toy import consistency as toy_cm

    c = toy_cm.get_config()
    for k, v in training.items():
        c.training[k] = v
    return c


@pytest.mark.slow
def test_distillation_from_the_exact_mixture_score_learns_the_pf_ode_endpoint():
    """CD of the toy MLP for 2000 steps with the exact score of a 2-D mixture as teacher (18
    levels, Heun steps, the EMA as target network): on held-out noisy points at three of its
    levels (sigma 0.59, 1.9, 8.4) f is within 0.15 RMS of the exact PF-ODE endpoint (measured
    0.05-0.08; the mixture mean is 0.81 away, the identity 0.46-9.0) and one-step samples are
    within 0.1 sliced-W2 of the Monte-Carlo floor (measured: below it)."""
    gmm = mixture_2d()
    cfg = from_config(_toy_cm_config(n_iters=2000))
    exp = experiment.build(cfg, parallel.make_mesh(1))
    loss_fn = consistency.get_consistency_loss_fn(
        exp.apply_fn, exp.preconditioning, sigma_max=SIGMA_MAX, total_steps=2000,
        teacher=(SDE, gmm.score_fn(SDE)), num_scales=18,
    )  # fmt: skip
    steps = train.make_train_steps(loss_fn, exp.tx, 0.99, exp.mesh)
    state = exp.new_state()
    for i in range(2000 // 50):
        keys = jax.random.split(jax.random.key(100 + i), 50)
        batches = [{"x": np.asarray(gmm.sample(k, 512))} for k in keys]
        state, _ = steps(state, batches)
    f = get_denoiser(exp.apply_fn, exp.preconditioning)
    params = state.ema_params
    levels = np.asarray(consistency.karras_sigmas(18, SIGMA_MIN, SIGMA_MAX))
    for sigma in levels[[6, 8, 11]]:
        x0 = gmm.sample(jax.random.key(7), 2000)
        noisy = x0 + float(sigma) * jax.random.normal(jax.random.key(8), x0.shape)
        s = jnp.full((2000,), float(sigma))
        exact = _ode_endpoint(gmm.score_fn(SDE), noisy, s)
        rms = float(jnp.sqrt(jnp.mean(jnp.sum((f(params, noisy, s) - exact) ** 2, -1))))
        baseline = float(jnp.sqrt(jnp.mean(jnp.sum((gmm.mean() - exact) ** 2, -1))))
        assert rms < 0.15 and rms < 0.3 * baseline, (sigma, rms, baseline)
    from benchmarks.quality_nfe import sliced_wasserstein

    x = exp.sample(params, jax.random.key(9), 2000, "consistency")[0]
    reference = np.asarray(gmm.sample(jax.random.key(10), 2000))
    floor = sliced_wasserstein(np.asarray(gmm.sample(jax.random.key(11), 2000)), reference)
    assert sliced_wasserstein(x, reference) < floor + 0.1


def _launch(*args):
    """launch.py on one CPU device (the suite's four fake devices stall XLA's all-reduce
    rendezvous when two such runs share two busy cores; tests/method/test_flow.py does the same)."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
    run = subprocess.run(
        [sys.executable, "launch.py", *args], cwd=REPO, capture_output=True, text=True, env=env
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def _on_the_data(path) -> float:
    """The fraction of the samples in `path` whose true log-density is above the data's own 1%
    quantile (the data: 0.99; samples of the data's Gaussian fit: 0.35)."""
    gmm = toy_density("gmm")
    level = float(jnp.quantile(gmm.log_prob(gmm.sample(jax.random.key(0), 20000)), 0.01))
    with np.load(path) as data:
        x = jnp.asarray(data[data.files[0]])
    return float(jnp.mean(gmm.log_prob(x) > level))


@pytest.mark.slow
def test_consistency_training_and_distillation_through_the_launcher(tmp_path):
    """configs/toy/consistency.py through launch.py: consistency training (1500 steps) and
    distillation (1500 steps, EMA 0.95 as target) from a VP score model trained first (1000 steps
    of configs/toy/gmm.py). Their one-step (eval) and two-step (sample mode) samples lie on the
    data: most are above the data's 1% log-density quantile (Gaussian fit 0.35; measured CT 0.72,
    CD 0.86 at one step); `nfe_consistency` is 1."""
    cm = ["--config", "configs/toy/consistency.py", "--config.training.snapshot_sampling=False"]
    ct = str(tmp_path / "ct")
    _launch(*cm, "--workdir", ct, "--config.training.n_iters=1500")
    teacher = str(tmp_path / "teacher")
    _launch(
        "--config", "configs/toy/gmm.py", "--workdir", teacher, "--config.training.n_iters=1000",
        "--config.training.eval_after_training=False", "--config.training.snapshot_sampling=False",
    )  # fmt: skip
    cd = str(tmp_path / "cd")
    _launch(
        *cm, "--workdir", cd, "--config.training.n_iters=1500", "--config.model.ema_rate=0.95",
        "--config.training.loss=consistency_distillation", f"--config.training.teacher={teacher}",
    )  # fmt: skip
    for workdir in (ct, cd):
        with open(os.path.join(workdir, "eval", "1500", "results.json")) as f:
            assert json.load(f)["nfe_consistency"] == 1
        one = _on_the_data(os.path.join(workdir, "eval", "1500", "consistency.npz"))
        _launch(*cm, "--workdir", workdir, "--mode", "sample", "--config.sampling.num_steps=2",
                "--config.sampling.num_samples=2000")  # fmt: skip
        (path,) = glob.glob(os.path.join(workdir, "samples", "ckpt_1500_consistency_nfe2_*.npz"))
        two = _on_the_data(path)
        assert one > 0.5 and two > 0.5, (workdir, one, two)


def test_resumed_consistency_training_equals_uninterrupted(tmp_path):
    """The curriculum follows the step: 12 steps straight, and the same run resumed from its
    step-6 checkpoint (the step-12 one removed), give the same parameters bit for bit (tiny toy CM,
    K = 12, so N doubles every step or two). Changing n_iters on resume would change the
    curriculum, so the run identity refuses it."""
    import shutil

    from score_sde.run import modes
    from score_sde.store.checkpoint import Checkpoints

    def run(workdir, n_iters=12):
        c = _toy_cm_config(
            n_iters=n_iters, n_jitted_steps=3, snapshot_freq=6, snapshot_freq_for_preemption=6,
            snapshot_sampling=False, eval_after_training=False, batch_size=32, ct_s0=2, ct_s1=64,
        )  # fmt: skip
        c.model.nf, c.model.num_layers = 16, 1
        c.training.log_freq = c.training.eval_freq = 6
        modes.run("train", c, str(workdir), stream=io.StringIO())

    run(tmp_path / "a")
    run(tmp_path / "b")
    for sub in ("checkpoints", "checkpoints-meta"):
        shutil.rmtree(tmp_path / "b" / sub / "12", ignore_errors=True)
    run(tmp_path / "b")
    params = []
    for w in ("a", "b"):
        cfg = from_config(json.loads((tmp_path / w / "config.json").read_text()))
        like = experiment.build(cfg, parallel.make_mesh(1)).state_like()
        with Checkpoints(str(tmp_path / w), read_only=True) as ckpts:
            state = ckpts.restore(like)
            assert ckpts.last_restored_step == 12
        params.append(parallel.to_host(state.params))
    for a, b in zip(jax.tree.leaves(params[0]), jax.tree.leaves(params[1]), strict=True):
        np.testing.assert_array_equal(a, b)
    assert int(consistency.num_levels(11, 12, 2, 64)) > int(consistency.num_levels(0, 12, 2, 64))
    with pytest.raises(ValueError, match="training.n_iters"):
        run(tmp_path / "b", n_iters=24)


def test_configuration_errors():
    from score_sde.config import load_file

    base = load_file(os.path.join(REPO, "configs/toy/consistency.py"))

    def err(**fields):
        c = load_file(os.path.join(REPO, "configs/toy/consistency.py"))
        for k, v in fields.items():
            section, name = k.split("__")
            c[section][name] = v
        with pytest.raises(ValueError) as e:
            from_config(c)
        return str(e.value)

    assert from_config(base).training.loss == "consistency_training"
    assert "config.training.teacher" in err(training__loss="consistency_distillation")
    assert "consistency_distillation" in err(training__teacher="runs/x")
    assert "preconditioning" in err(model__preconditioning="edm")
    assert "sde='vesde'" in err(training__sde="vpsde")
    assert "ct_s1" in err(training__ct_s1=5)
    assert "teacher_solver" in err(training__teacher_solver="rk4")
    with pytest.raises(ValueError, match="preconditioning='consistency'"):
        consistency.get_consistency_loss_fn(
            None, Preconditioning("edm"), sigma_max=80.0, total_steps=10
        )
