"""Train step: 4 devices == 1 device, scan == loop, warmup, clipping, EMA, NaN stop."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from score_sde import parallel
from score_sde.config import OptimConfig, from_config
from score_sde.run import experiment, train
from score_sde.store import checkpoint
from tests.helpers import tiny_config


def _one_step(num_devices: int, batch, scan: bool):
    cfg = from_config(tiny_config("train"))
    exp = experiment.build(cfg, parallel.make_mesh(num_devices))
    state = exp.new_state()
    step = train.make_train_steps(exp.loss_fn(train=True), exp.tx, 0.9, exp.mesh, scan=scan)
    state, metrics = step(state, [batch])
    return parallel.to_host(state), parallel.to_host(metrics)


@pytest.mark.parametrize("scan", [False, True], ids=["dispatch-loop", "scan"])
def test_four_devices_equal_one_device(scan):
    assert jax.device_count() >= 4, "tests/conftest.py fakes 4 CPU devices"
    x = np.asarray(jax.random.normal(jax.random.key(3), (16, 2)))
    s1, m1 = _one_step(1, {"x": x}, scan)
    s4, m4 = _one_step(4, {"x": x}, scan)
    np.testing.assert_allclose(m1["loss"], m4["loss"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(s1), jax.tree.leaves(s4), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # the step really moved the params (so the comparison is not vacuous)
    s0 = parallel.to_host(
        experiment.build(from_config(tiny_config("train")), parallel.make_mesh(1)).new_state()
    )
    moved = [
        np.abs(a - b).max()
        for a, b in zip(jax.tree.leaves(s0.params), jax.tree.leaves(s1.params), strict=True)
    ]
    assert max(moved) > 1e-4


@pytest.mark.slow
def test_scan_equals_python_loop():
    """k steps in one lax.scan dispatch == k dispatches of the jitted step == k separate calls
    (same keys, same batches), and the metrics line up step by step."""
    cfg = from_config(tiny_config("train"))
    exp = experiment.build(cfg, parallel.make_mesh(2))
    loss_fn = exp.loss_fn(train=True)
    xs = np.asarray(jax.random.normal(jax.random.key(4), (3, 16, 2)))
    batches = [{"x": x} for x in xs]
    scanned = train.make_train_steps(loss_fn, exp.tx, 0.9, exp.mesh, scan=True)
    looped = train.make_train_steps(loss_fn, exp.tx, 0.9, exp.mesh, scan=False)
    a, ma = scanned(exp.new_state(), batches)
    b, mb = looped(exp.new_state(), batches)
    c = exp.new_state()
    for batch in batches:
        c, _ = scanned(c, [batch])
    assert int(a.step) == int(b.step) == int(c.step) == 3
    assert np.asarray(ma["loss"]).shape == np.asarray(mb["loss"]).shape == (3,)
    np.testing.assert_allclose(np.asarray(ma["loss"]), np.asarray(mb["loss"]), rtol=1e-6)
    for u, v, w in zip(jax.tree.leaves(a), jax.tree.leaves(b), jax.tree.leaves(c), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(np.asarray(u), np.asarray(w), rtol=1e-6, atol=1e-7)


def test_warmup_clipping_and_ema_match_formulas():
    """One step on loss = <w, g> has gradient g: check clip, Adam's first step, lr warmup, EMA."""
    optim = OptimConfig(lr=0.1, warmup=10, grad_clip=1.0)
    tx = train.make_optimizer(optim)
    g = jnp.array([3.0, 4.0])  # norm 5 -> clipped to norm 1
    loss_fn = lambda p, key, batch: jnp.sum(p["w"] * g)
    state = train.init_state({"w": jnp.zeros(2)}, tx, jax.random.key(0))
    new, metrics = train.train_step(state, {}, loss_fn=loss_fn, tx=tx, ema_rate=0.75)
    lr0 = 0.1 * 1 / 10
    # Adam's first step is lr * m_hat / (sqrt(v_hat) + eps) = lr * sign(g) (bias-corrected)
    expected = -lr0 * np.sign(np.asarray(g))
    np.testing.assert_allclose(new.params["w"], expected, rtol=1e-5)
    np.testing.assert_allclose(new.ema_params["w"], 0.25 * expected, rtol=1e-5)
    np.testing.assert_allclose(metrics["grad_norm"], 5.0, rtol=1e-6)
    assert int(new.step) == 1
    sched = train.learning_rate_schedule(optim)
    np.testing.assert_allclose([sched(0), sched(4), sched(9), sched(100)], [0.01, 0.05, 0.1, 0.1])
    # per-step keys depend on the step, and only on it
    k1 = train.step_key(new)
    assert not np.array_equal(jax.random.key_data(k1), jax.random.key_data(train.step_key(state)))


class _NaNAfter:
    """Dataset whose batches turn NaN from step `bad` on."""

    def __init__(self, bad, batch=16):
        self.bad, self.batch_size = bad, batch

    def batch(self, step):
        x = np.asarray(jax.random.normal(jax.random.key(step), (self.batch_size, 2)))
        return {"x": x * np.nan if step >= self.bad else x}


def test_nan_loss_stops_with_message_and_keeps_last_checkpoint(tmp_path):
    from score_sde.run.modes.train import train_and_evaluate

    c = tiny_config(
        "train",
        **{
            "training.n_iters": 20,
            "training.snapshot_freq": 100,
            "training.snapshot_freq_for_preemption": 4,
            "training.log_freq": 100,
            "training.eval_freq": 100,
        },
    )
    cfg = from_config(c)
    with pytest.raises(
        FloatingPointError,
        match=r"training loss is nan at step 7.*last good checkpoint \S+checkpoints-meta/4 is kept",
    ):
        train_and_evaluate(cfg, str(tmp_path), dataset=_NaNAfter(6), mesh=parallel.make_mesh(1))
    exp = experiment.build(cfg, parallel.make_mesh(1))
    with checkpoint.Checkpoints(str(tmp_path)) as ckpts:
        assert ckpts.latest_step() == 4
        restored = ckpts.restore(exp.state_like())
    assert all(np.isfinite(np.asarray(v)).all() for v in jax.tree.leaves(restored.params))
    assert int(restored.step) == 4


def test_optimizer_config_errors():
    with pytest.raises(ValueError, match=r"config.optim.optimizer \('SGD'\)"):
        OptimConfig(optimizer="SGD")
    with pytest.raises(ValueError, match=r"config.optim.grad_clip \(nan\) must be a finite"):
        OptimConfig(grad_clip=float("nan"))
    assert isinstance(
        train.make_optimizer(OptimConfig(grad_clip=-1.0)), optax.GradientTransformation
    )


def test_amsgrad_keeps_the_running_max_of_the_second_moment():
    """config.optim.amsgrad (the original NCSN configs carry it) is optax's AMSGrad: the step
    divides by the running max of the bias-corrected second moment.

    Gradients 3 then 1 on one weight, no warmup or clipping, b2 = 0.999: at step 2 Adam uses
    v_hat_2 = (0.999 * 0.001 * 9 + 0.001) / (1 - 0.999^2) ~ 5, AMSGrad max(v_hat_1, v_hat_2) = 9."""
    grads = [jnp.array([3.0]), jnp.array([1.0])]
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-8

    def run(amsgrad):
        tx = train.make_optimizer(OptimConfig(lr=lr, warmup=0, grad_clip=-1.0, amsgrad=amsgrad))
        p, s = jnp.zeros(1), tx.init(jnp.zeros(1))
        for g in grads:
            u, s = tx.update(g, s, p)
            p = p + u
        return float(p[0])

    m1, v1 = (1 - b1) * 3.0, (1 - b2) * 9.0
    m2, v2 = b1 * m1 + (1 - b1) * 1.0, b2 * v1 + (1 - b2) * 1.0
    step1 = -lr * (m1 / (1 - b1)) / (np.sqrt(v1 / (1 - b2)) + eps)
    adam2 = -lr * (m2 / (1 - b1**2)) / (np.sqrt(v2 / (1 - b2**2)) + eps)
    v_hat = max(v1 / (1 - b2), v2 / (1 - b2**2))
    ams2 = -lr * (m2 / (1 - b1**2)) / (np.sqrt(v_hat) + eps)
    np.testing.assert_allclose(run(False), step1 + adam2, rtol=1e-5)
    np.testing.assert_allclose(run(True), step1 + ams2, rtol=1e-5)
    assert abs(ams2) < abs(adam2)  # the kept larger second moment shrinks the step
