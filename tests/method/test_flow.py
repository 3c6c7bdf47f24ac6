"""Flow matching against exact answers: the linear and cosine paths as SDEs, the velocity <-> score
<-> denoiser conversions, the flow-matching loss, PF-ODE samples, Euler == DDIM, the exact
likelihood, 4 devices == 1, and the toy trained through the launcher.

The oracle is a Gaussian mixture: along every path each component stays Gaussian, so the velocity
E[alpha' x_0 + std' z | x_t] is known in closed form (GaussianMixture.velocity_fn, written without
the score) and so are the score, the denoiser and log p_0.
"""

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

from score_sde import fast_sampling, likelihood, losses, sampling
from score_sde import score_fn as score_fn_lib
from score_sde.data.toy_data import toy_density
from score_sde.gmm import GaussianMixture
from score_sde.sde import SDE, VPSDE, FlowPath, get_sde
from tests.helpers import REPO, simulate_forward
from tests.oracles import assert_matches_mixture, mixture_2d, mixture_nd

PATHS = {"linear": FlowPath("linear"), "cosine": FlowPath("cosine")}


def _f64(gmm: GaussianMixture) -> GaussianMixture:
    return GaussianMixture(*(jnp.asarray(a, jnp.float64) for a in gmm))


def velocity_score_fn(gmm: GaussianMixture, sde: SDE):
    """A sampler's score_fn(x, t) made from the exact velocity, as a trained velocity network's is."""
    velocity = gmm.velocity_fn(sde)
    return lambda x, t: score_fn_lib.velocity_to_score(sde, x, t, velocity(x, t))


@pytest.mark.parametrize("path", list(PATHS))
def test_path_coefficients_solve_the_moment_equations(path):
    """x_t = a x_0 + s z is the SDE's marginal: a' = f a and (s^2)' = 2 f s^2 + g^2; the closed-form
    derivatives equal finite differences and the base class's forward-mode ones; sigma <-> t."""
    sde = PATHS[path]
    with jax.enable_x64(True):
        t = jnp.linspace(0.01, sde.T, 9, dtype=jnp.float64)
        a, s = sde.marginal_coeffs(t)
        if path == "linear":
            np.testing.assert_allclose(a, 1 - t, rtol=1e-15), np.testing.assert_allclose(s, t)
        else:
            np.testing.assert_allclose(a**2 + s**2, 1.0, rtol=1e-14)  # variance preserving
        da, ds = sde.coeff_derivatives(t)
        h = 1e-6
        (ap, sp), (am, sm) = sde.marginal_coeffs(t + h), sde.marginal_coeffs(t - h)
        np.testing.assert_allclose(da, (ap - am) / (2 * h), rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(ds, (sp - sm) / (2 * h), rtol=1e-7, atol=1e-9)
        jvp = SDE.coeff_derivatives(sde, t)
        np.testing.assert_allclose(jvp[0], da, rtol=1e-13), np.testing.assert_allclose(jvp[1], ds)
        f, g = sde.sde(jnp.ones((9, 1), jnp.float64), t)
        np.testing.assert_allclose(da, f[:, 0] * a, rtol=1e-12)
        np.testing.assert_allclose(2 * s * ds, 2 * f[:, 0] * s**2 + g**2, rtol=1e-9, atol=1e-14)
    sigmas = [sde.noise_level(float(ti)) for ti in t]
    np.testing.assert_allclose(sigmas, np.asarray(s / a), rtol=1e-12)
    np.testing.assert_allclose([sde.time_of_noise_level(x) for x in sigmas], t, rtol=1e-12)
    assert sde.noise_level(0.5) == pytest.approx(1.0)  # a = s at t = 1/2 on both paths


@pytest.mark.parametrize("path", list(PATHS))
def test_marginals_match_the_simulated_sde(path):
    """Euler-Maruyama on dx = f dt + g dw from a point x_0 lands on N(a x_0, s^2 I)."""
    sde, n, t_end = PATHS[path], 20000, 0.9
    x0 = jnp.tile(jnp.array([[1.5, -0.5]]), (n, 1))
    xt = np.asarray(simulate_forward(sde, jax.random.key(0), x0, t_end, steps=2000), np.float64)
    mean, std = sde.marginal_prob(x0[:1], jnp.array([t_end]))
    mean, std = np.asarray(mean[0]), float(std[0])
    np.testing.assert_array_less(np.abs(xt.mean(0) - mean), 4.5 * std / math.sqrt(n) + 5e-3)
    np.testing.assert_array_less(np.abs(xt.std(0) - std), 4.5 * std / math.sqrt(2 * n) + 5e-3)


@pytest.mark.parametrize("sde", [*PATHS.values(), VPSDE()], ids=[*PATHS, "vp"])
def test_velocity_score_and_denoiser_conversions_are_exact(sde):
    """The exact velocity turned into a score and a denoiser gives the mixture's exact score and
    Tweedie denoiser (float64); score_to_velocity inverts it. On the linear path also at t = 1."""
    with jax.enable_x64(True):
        gmm = _f64(mixture_nd(3))
        n = 12
        t = jnp.linspace(0.01, sde.T, n, dtype=jnp.float64)
        x = gmm.marginal_sample(jax.random.key(0), sde, 0.5, n).astype(jnp.float64)
        x = x + jax.random.normal(jax.random.key(1), x.shape, jnp.float64)  # off the data too
        v = gmm.velocity_fn(sde)(x, t)
        score = gmm.marginal_score(sde, x, t)
        alpha, std = sde.marginal_coeffs(t)
        tweedie = (x + std[:, None] ** 2 * score) / alpha[:, None]
        np.testing.assert_allclose(
            score_fn_lib.velocity_to_score(sde, x, t, v), score, 1e-10, 1e-10
        )
        np.testing.assert_allclose(
            score_fn_lib.velocity_to_denoiser(sde, x, t, v), tweedie, 1e-9, 1e-9
        )
        np.testing.assert_allclose(score_fn_lib.score_to_velocity(sde, x, t, score), v, 1e-9, 1e-9)
        if isinstance(sde, FlowPath) and sde.path == "linear":
            one = jnp.ones((n,), jnp.float64)  # x_1 = z: score -x, velocity x - E[x_0]
            v1 = gmm.velocity_fn(sde)(x, one)
            np.testing.assert_allclose(v1, x - gmm.mean()[None], rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(score_fn_lib.velocity_to_score(sde, x, one, v1), -x)


def _perturbed_exact_velocity(gmm, sde):
    """A network `apply_fn(params, x, labels)` (labels = 999 t) whose params c perturb the exact
    velocity along x: v* + c x."""
    velocity = gmm.velocity_fn(sde)

    def apply_fn(params, x, labels, *, train=False, rng=None, class_labels=None):
        return velocity(x, labels / 999.0) + params * x

    return apply_fn


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("time_sampling", ["uniform", "logit_normal"])
def test_flow_matching_loss_is_minimized_at_the_exact_velocity(path, time_sampling):
    sde, gmm = PATHS[path], mixture_2d()
    loss_fn = losses.get_flow_matching_loss_fn(
        sde, _perturbed_exact_velocity(gmm, sde), time_sampling=time_sampling
    )
    batch, key = {"x": gmm.sample(jax.random.key(0), 20000)}, jax.random.key(7)
    f = lambda c: loss_fn(c, key, batch)
    c_star = float(-jax.grad(f)(0.0) / jax.grad(jax.grad(f))(0.0))
    assert abs(c_star) < 0.02, c_star
    base = float(f(0.0))
    assert np.isfinite(base) and base < float(f(0.1)) and base < float(f(-0.1))
    # the conditional target's own variance is left: E||z - x_0||^2 - E||v*||^2 > 0 (linear)
    assert base > 0.05


def test_logit_normal_times_are_logit_normal():
    sde, eps = PATHS["linear"], 1e-5
    t = losses.flow_times(
        jax.random.key(0), 20000, sde, eps=eps, time_sampling="logit_normal", logit_mean=0.3,
        logit_std=0.8,
    )  # fmt: skip
    u = (np.asarray(t, np.float64) - eps) / (sde.T - eps)
    assert stats.kstest(np.log(u / (1 - u)), stats.norm(0.3, 0.8).cdf).pvalue > 1e-3
    assert float(t.min()) >= eps and float(t.max()) <= sde.T


@pytest.mark.parametrize("path", list(PATHS))
def test_pf_ode_samples_from_the_velocity_match_the_mixture(path):
    sde, gmm = PATHS[path], mixture_2d()
    sampler = sampling.get_ode_sampler(sde, (3000, 2))
    x, nfe = jax.jit(sampler, static_argnums=1)(jax.random.key(1), velocity_score_fn(gmm, sde))
    assert_matches_mixture(np.asarray(x), gmm, slack=0.01)
    assert 10 < int(nfe) < 2000


def test_euler_on_the_velocity_is_ddim_on_the_linear_path():
    """'euler' (DDIM, eta = 0, uniform t) equals Euler's method x += (t' - t) v(x, t) from the
    prior sample, to float64 rounding; with `denoise` its last step goes to t = 0."""
    sde, steps = PATHS["linear"], 12
    with jax.enable_x64(True):
        gmm = _f64(mixture_2d())
        velocity = gmm.velocity_fn(sde)
        score = lambda x, t: score_fn_lib.velocity_to_score(sde, x, t, velocity(x, t))
        key = jax.random.key(3)
        for denoise in (False, True):
            ours, nfe = fast_sampling.get_sampler(
                sde, (64, 2), "euler", num_steps=steps, denoise=denoise
            )(key, score)
            ts = list(np.linspace(sde.T, 1e-3, steps)) + ([0.0] if denoise else [])
            x = sde.prior_sampling(key, (64, 2)).astype(jnp.float64)
            for t, t_next in zip(ts[:-1], ts[1:], strict=True):
                x = x + (t_next - t) * velocity(x, jnp.full((64,), t))
            assert int(nfe) == len(ts) - 1
            np.testing.assert_allclose(ours, x, rtol=1e-10, atol=1e-10)


@pytest.mark.slow
@pytest.mark.parametrize("path", list(PATHS))
def test_exact_likelihood_from_the_velocity_matches_the_mixture(path):
    """log p_0 through the PF ODE of the velocity's score equals the mixture's log-density; the
    Gaussian prior at T = 0.999 (a(T) = 1e-3 for the linear path) costs < 0.01 nats/dim."""
    sde, gmm, eps = PATHS[path], mixture_2d(), 1e-5
    x = gmm.sample(jax.random.key(0), 64)
    fn = jax.jit(
        likelihood.get_likelihood_fn(sde, hutchinson_type="exact", eps=eps), static_argnums=1
    )
    logp, z, nfe = fn(jax.random.key(1), velocity_score_fn(gmm, sde), x)
    exact = gmm.marginal_log_prob(sde, x, jnp.full((64,), eps))
    assert float(jnp.max(jnp.abs(logp - exact))) / 2 < 0.01
    true_prior = gmm.marginal_log_prob(sde, z, jnp.full((64,), sde.T))
    ode_only = logp - sde.prior_logp(z) + true_prior
    assert float(jnp.max(jnp.abs(ode_only - exact))) / 2 < 1e-3
    assert 10 < int(nfe) < 3000


def test_sampling_and_likelihood_over_four_devices_equal_one():
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    sde, gmm = PATHS["linear"], mixture_nd(4)
    mesh = Mesh(np.array(jax.devices()[:4]), ("data",))
    sharding = NamedSharding(mesh, P("data"))
    score = velocity_score_fn(gmm, sde)
    out = {}
    for method, steps in (("heun", 6), ("consistency", 2)):  # consistency: any model's D
        for name, shard in (("one", None), ("four", sharding)):
            sampler = fast_sampling.get_sampler(
                sde, (16, 4), method, num_steps=steps, sharding=shard
            )
            out[name] = jax.jit(sampler, static_argnums=1)(jax.random.key(0), score)[0]
        assert len(out["four"].sharding.device_set) == 4
        np.testing.assert_allclose(out["one"], out["four"], rtol=1e-5, atol=1e-5)
    x = gmm.sample(jax.random.key(0), 16)
    fn = jax.jit(likelihood.get_likelihood_fn(sde, eps=1e-5), static_argnums=1)
    one = fn(jax.random.key(1), score, x)[0]
    four = fn(jax.random.key(1), score, jax.device_put(x, sharding))[0]
    assert len(four.sharding.device_set) == 4
    np.testing.assert_allclose(np.asarray(four), np.asarray(one), rtol=1e-5, atol=1e-4)


def test_factory_and_errors():
    assert get_sde("flow") == FlowPath("linear") and get_sde("cosine_flow").path == "cosine"
    with pytest.raises(ValueError, match="path"):
        FlowPath("quadratic")
    with pytest.raises(ValueError, match="t_max"):
        FlowPath(t_max=1.0)
    with pytest.raises(ValueError, match="flow path"):
        score_fn_lib.get_velocity_fn(VPSDE(), lambda *a, **k: None)
    with pytest.raises(ValueError, match="sde to 'flow'"):
        losses.get_loss_fn(VPSDE(), lambda *a, **k: None, objective="flow_matching")
    with pytest.raises(ValueError, match="time_sampling"):
        losses.get_flow_matching_loss_fn(PATHS["linear"], None, time_sampling="beta")


@pytest.mark.slow
def test_toy_flow_config_trains_samples_and_evaluates_through_the_launcher(tmp_path):
    """configs/toy/flow.py for 600 steps through launch.py: its test log-likelihood clearly beats
    the best single Gaussian and stays below the true density (measured at 3000 steps: -1.63
    against -1.61 true, -3.21 Gaussian); then `--mode sample` with 'euler' at 20 steps writes samples
    that lie on the data."""
    workdir = str(tmp_path / "run")
    common = [sys.executable, "launch.py", "--config", "configs/toy/flow.py", "--workdir", workdir]
    steps = "--config.training.n_iters=600 --config.training.eval_freq=600"
    steps += " --config.training.snapshot_freq=600 --config.training.snapshot_sampling=False"
    steps += " --config.eval.num_bpd_examples=1000 --config.eval.enable_loss=False"
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")  # no stalls
    run = subprocess.run(common + steps.split(), cwd=REPO, capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    with open(os.path.join(workdir, "eval", "600", "results.json")) as f:
        results = json.load(f)
    ll, gauss = results["test_log_likelihood"], results["gaussian_fit_log_likelihood"]
    assert ll > gauss + 0.6 and ll < results["true_log_likelihood"] + 0.1, results
    assert results["nfe_ddim"] == 50  # 'euler': DDIM's default 50 uniform steps in t
    sample = common + ["--mode", "sample", "--config.sampling.method=euler"]
    sample += ["--config.sampling.num_steps=20", "--config.sampling.num_samples=500"]
    run = subprocess.run(sample, cwd=REPO, capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    files = [f for f in os.listdir(os.path.join(workdir, "samples")) if f.endswith(".npz")]
    assert len(files) == 1 and "ddim" in files[0], files
    with np.load(os.path.join(workdir, "samples", files[0])) as data:
        x = data[data.files[0]]
    assert x.shape == (500, 2) and np.all(np.isfinite(x))
    # the Euler samples sit on the data: their mean true log-density (measured -2.46) is far
    # above that of samples of the data's Gaussian fit (-9.9) and below the data's own (-1.66)
    gmm = toy_density("gmm")
    data = gmm.sample(jax.random.key(0), 20000)
    fit = jax.random.multivariate_normal(jax.random.key(1), data.mean(0), jnp.cov(data.T), (20000,))
    on_samples, on_data, on_fit = (
        float(jnp.mean(gmm.log_prob(jnp.asarray(v)))) for v in (x, data, fit)
    )
    assert on_fit + 5.0 < on_samples < on_data + 0.1, (on_samples, on_data, on_fit)


@pytest.mark.parametrize("config", ["toy/flow.py", "toy/consistency.py"])
def test_a_train_step_on_four_devices_equals_one(config):
    """Flow matching's and consistency training's steps (loss, grads, Adam, EMA) on a batch
    sharded over 4 devices equal the 1-device step."""
    from score_sde import parallel
    from score_sde.config import from_config, load_file
    from score_sde.run import experiment, train

    c = load_file(os.path.join(REPO, "configs", config))
    c.model.nf, c.model.num_layers, c.training.batch_size = 16, 1, 16
    cfg = from_config(c)
    x = np.asarray(jax.random.normal(jax.random.key(3), (16, 2)))
    out = []
    for devices in (1, 4):
        exp = experiment.build(cfg, parallel.make_mesh(devices))
        steps = train.make_train_steps(exp.loss_fn(train=True), exp.tx, 0.9, exp.mesh)
        state, metrics = steps(exp.new_state(), [{"x": x}, {"x": x}])
        out.append((parallel.to_host(state), parallel.to_host(metrics)))
    (s1, m1), (s4, m4) = out
    np.testing.assert_allclose(m1["loss"], m4["loss"], rtol=1e-5)
    assert float(m1["loss"][0]) != float(m1["loss"][1])  # the second step saw new params
    for a, b in zip(jax.tree.leaves(s1), jax.tree.leaves(s4), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
