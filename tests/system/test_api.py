"""The three-line Python API (score_sde.load -> sample / log_likelihood / bits_per_dim).

Oracles: with every parameter zero the networks output 0, so the score is 0 and the VP
probability-flow ODE is dx/dt = -beta(t) x / 2: x_T = x_0 a, a = exp(-B/2), B = int_eps^1 beta,
and log p_0(x) = log N(x_T; 0, I) - D B / 2 exactly (the Rademacher trace estimate of the
diagonal Jacobian is exact). Samples equal those of --mode=sample with the same key.
"""

from __future__ import annotations

import io
import math

import jax
import numpy as np
import pytest

import score_sde
from score_sde import api
from score_sde import config as config_lib
from score_sde.run import experiment, modes
from tests.helpers import tiny_config

EPS = 1e-5  # likelihood.get_likelihood_fn's starting time


def _zero_score_logp(x: np.ndarray, beta_min: float, beta_max: float) -> np.ndarray:
    B = beta_min * (1 - EPS) + 0.5 * (beta_max - beta_min) * (1 - EPS**2)
    d = x[0].size
    x_T = x.reshape(len(x), -1) * math.exp(-B / 2)
    prior = -0.5 * (x_T**2).sum(1) - 0.5 * d * math.log(2 * math.pi)
    return prior - d * B / 2


def _zeros(model: api.Model) -> api.Model:
    return api.Model(model.exp, jax.tree.map(np.zeros_like, model.params), 0)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    c = tiny_config("modes")
    c.eval.rtol = c.eval.atol = 1e-6
    workdir = str(tmp_path_factory.mktemp("api"))
    modes.run("train", c, workdir, stream=io.StringIO())
    return c, workdir


@pytest.mark.slow
def test_load_restores_the_run(toy):
    c, workdir = toy
    model = score_sde.load(workdir)
    assert model.step == c.training.n_iters
    assert model.cfg == config_lib.from_config(c)
    samples = modes.run("sample", c, workdir, stream=io.StringIO())
    key = jax.random.fold_in(jax.random.fold_in(model.exp.key(experiment.KEY_SAMPLES), 8), 2)
    np.testing.assert_array_equal(model.sample(key, c.sampling.num_samples), samples)


def test_toy_log_likelihood_of_a_zero_score(toy):
    _, workdir = toy
    model = _zeros(score_sde.load(workdir))
    with pytest.raises(ValueError, match=r"bits_per_dim is for 8-bit images.*\[2\].*nats"):
        model.bits_per_dim(jax.random.key(0), np.zeros((4, 2), np.uint8))
    x = np.random.default_rng(0).normal(size=(8, 2)).astype(np.float32) * 2
    m = model.cfg.model
    got = model.log_likelihood(jax.random.key(0), x)
    np.testing.assert_allclose(got, _zero_score_logp(x, m.beta_min, m.beta_max), rtol=1e-4)


@pytest.mark.slow
def test_bits_per_dim_of_digits(trained_digits):
    from sklearn.datasets import load_digits

    _, workdir = trained_digits
    model = score_sde.load(workdir, overrides={"eval.rtol": "1e-4", "eval.atol": "1e-4"})
    pixels = np.round(load_digits().images[-16:, :, :, None] / 16 * 255).astype(np.uint8)
    zero = _zeros(model)
    key = jax.random.key(3)
    bpd0 = zero.bits_per_dim(key, pixels)
    # the same dequantization noise as bits_per_dim: its first split key
    u = (pixels + jax.random.uniform(jax.random.split(key)[0], pixels.shape)) / 256.0
    x = 2 * np.asarray(u) - 1 if model.cfg.data.centered else np.asarray(u)
    m = model.cfg.model
    expect = -_zero_score_logp(x, m.beta_min, m.beta_max) / (64 * math.log(2)) + 8
    expect -= math.log2(2.0 if model.cfg.data.centered else 1.0)
    np.testing.assert_allclose(bpd0, expect, rtol=1e-3)
    trained = model.bits_per_dim(key, pixels)
    assert trained.shape == (16,) and trained.mean() < bpd0.mean() - 1.0, (trained, bpd0)


def test_load_errors(tmp_path, trained_digits):
    with pytest.raises(ValueError, match="config.json not found"):
        score_sde.load(str(tmp_path))
    (tmp_path / "config.json").write_text('{"training": {"sde": "vpsde",')  # cut by hand
    with pytest.raises(ValueError, match=r"config.json is not JSON \(.*\).*rerun the training"):
        score_sde.load(str(tmp_path))
    model = score_sde.load(trained_digits[1])
    with pytest.raises(ValueError, match=r"uint8 images \[B, 8, 8, 1\]"):
        model.bits_per_dim(jax.random.key(0), np.zeros((2, 8, 8, 1), np.float32))
