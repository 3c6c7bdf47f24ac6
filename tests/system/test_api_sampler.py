"""Model.sample / log_likelihood take the sampler and its options per call: each is a field of
the config read through the command line's boundary, so a call equals the model loaded with the
same `--config.*` overrides, and a bad name or value is that boundary's ValueError."""

from __future__ import annotations

import dataclasses
import io

import jax
import numpy as np
import pytest

import score_sde
from configs.toy import base
from score_sde import api
from score_sde.run import modes


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A 2-D mixture's MLP trained for 8 steps (20 PC steps): its work directory."""
    c = base.get_config("toy/gmm")
    c.model.nf, c.model.num_layers, c.model.num_scales = 16, 1, 20
    t = c.training
    t.batch_size, t.n_iters, t.n_jitted_steps = 16, 8, 8
    t.log_freq = t.eval_freq = t.snapshot_freq = t.snapshot_freq_for_preemption = 8
    t.eval_after_training = t.snapshot_sampling = False
    c.sampling.batch_size = c.sampling.num_samples = 16
    c.eval.rtol = c.eval.atol = 1e-5
    workdir = str(tmp_path_factory.mktemp("api_sampler"))
    modes.run("train", c, workdir, stream=io.StringIO())
    return workdir


@pytest.fixture(scope="module")
def model(toy):
    return score_sde.load(toy)


KEY = jax.random.key(7)


def test_num_steps_sets_the_few_step_samplers_nfe(model):
    x5, nfe5 = model.sample_with_nfe(KEY, 16, method="ddim", num_steps=5)
    x10, nfe10 = model.sample_with_nfe(KEY, 16, "ddim", num_steps=10)
    assert (nfe5, nfe10) == (5, 10)  # DDIM: N score evaluations on N noise levels
    assert x5.shape == (16, 2) and not np.allclose(x5, x10)
    np.testing.assert_array_equal(model.sample(KEY, 16, "ddim", num_steps=5), x5)


def test_num_steps_of_pc_is_the_sdes_n(model):
    _, nfe = model.sample_with_nfe(KEY, 16, "pc", num_steps=30, corrector="none")
    assert nfe == 30  # reverse diffusion, one evaluation per step


def test_num_steps_of_pc_is_refused_for_a_discrete_time_model(model):
    cfg = model.cfg
    discrete = dataclasses.replace(
        cfg, training=dataclasses.replace(cfg.training, continuous=False)
    )
    other = api.Model(dataclasses.replace(model.exp, cfg=discrete), model.params, model.step)
    with pytest.raises(ValueError, match=r"config\.model\.num_scales, the N this discrete-time"):
        other.sample(KEY, 4, "pc", num_steps=10)


def test_a_call_equals_the_model_loaded_with_the_same_overrides(toy, model):
    got = model.sample(
        KEY, 16, "dpm2m", num_steps=6, discretization="edm", rho=5, noise_removal=False
    )
    loaded = score_sde.load(
        toy,
        overrides={
            "sampling.method": "dpm2m",
            "sampling.num_steps": "6",
            "sampling.discretization": "edm",
            "sampling.rho": "5",
            "sampling.noise_removal": "False",
        },
    )
    np.testing.assert_array_equal(got, loaded.sample(KEY, 16))
    pc = model.sample(KEY, 16, "pc", num_steps=24, snr=0.05, predictor="euler_maruyama")
    loaded = score_sde.load(
        toy,
        overrides={
            "sampling.method": "pc",
            "model.num_scales": "24",
            "sampling.snr": "0.05",
            "sampling.predictor": "euler_maruyama",
        },
    )
    np.testing.assert_array_equal(pc, loaded.sample(KEY, 16))


def test_positional_method_and_the_configured_sampler_still_work(model):
    assert model.sample(KEY, 16).shape == (16, 2)  # config.sampling.method: pc
    np.testing.assert_array_equal(
        model.sample(KEY, 16, "heun", num_steps=4), model.sample(KEY, 16, "edm_heun", num_steps=4)
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"snrr": 0.1}, r"unknown sampler option 'snrr' \(did you mean snr\?\)"),
        ({"num_samples": 4}, r"unknown sampler option 'num_samples'.*num_steps, predictor"),
        ({"snr": "much"}, r"config\.sampling\.snr takes a value of type float"),
        ({"snr": -1.0}, r"config\.sampling\.snr \(-1\.0\) must be >= 0"),
        ({"predictor": "rk4"}, r"config\.sampling\.predictor \('rk4'\) is not a predictor"),
        ({"method": "ddim", "num_steps": 1}, r"config\.sampling\.num_steps \(1\) must be 0"),
        (
            {"method": "ddim", "num_steps": 2.5},
            r"config\.sampling\.num_steps takes a value of type int",
        ),
        ({"method": "dpm_karras"}, r"config\.sampling\.method \('dpm_karras'\) must be one of"),
        ({"method": "sample_dpmpp_2m"}, r"k-diffusion's name for dpmpp_2m"),
        ({"method": "ode", "num_steps": 10}, r"num_steps \(10\): method 'ode' is adaptive"),
        ({"discretization": "karras"}, r"config\.sampling\.discretization \('karras'\) must be"),
    ],
)
def test_a_bad_option_names_the_field(model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        model.sample(KEY, 4, **kwargs)


def test_log_likelihood_takes_the_tolerances(toy, model):
    x = np.random.default_rng(0).normal(size=(8, 2)).astype(np.float32)
    fine = model.log_likelihood(KEY, x)  # config.eval: 1e-5
    np.testing.assert_array_equal(model.log_likelihood(KEY, x, rtol=1e-5, atol=1e-5), fine)
    coarse = model.log_likelihood(KEY, x, rtol=1e-2, atol=1e-2)
    assert np.isfinite(coarse).all() and not np.array_equal(coarse, fine)
    np.testing.assert_allclose(coarse, fine, atol=0.1)  # the same density, a coarser solve
    loaded = score_sde.load(toy, overrides={"eval.rtol": "1e-2", "eval.atol": "1e-2"})
    np.testing.assert_array_equal(loaded.log_likelihood(KEY, x), coarse)
    exact = model.log_likelihood(KEY, x, hutchinson_type="exact")
    assert exact.shape == (8,) and np.isfinite(exact).all()
    with pytest.raises(ValueError, match=r"config\.eval\.hutchinson_type \('normal'\) must be"):
        model.log_likelihood(KEY, x, hutchinson_type="normal")
    with pytest.raises(ValueError, match=r"config\.eval\.rtol \(0\.0\) must be positive"):
        model.log_likelihood(KEY, x, rtol=0.0)


def test_each_setting_is_built_once(model):
    model.sample(KEY, 4, "ddim", num_steps=5)
    a = model._with({"sampling.method": "ddim", "sampling.num_steps": "5"})
    assert model._with({"sampling.num_steps": "5", "sampling.method": "ddim"}) is a
    assert model._with({"sampling.method": model.cfg.sampling.method}) is model
