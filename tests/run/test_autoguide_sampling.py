"""Autoguidance through the sample mode (config.sampling.guide): the guide run's EMA params are
restored like the model's and the autoguided score s_g + w (s - s_g) is what every sampler gets.

- w = 1 reproduces the unguided samples bit for bit on PC, the ODE and a few-step sampler (the
  guide is loaded, checked and then not used).
- w = 2 with a guide of another network width samples what a sampler handed
  guidance.autoguided_score of the two restored models samples, and differs from the model alone.
- The Python API samples with a guide given as a sampler option (guide=, guide_weight=).
- A guide of another data shape is refused with one error naming config.sampling.guide.
"""

import io

import jax
import numpy as np
import pytest

from score_sde import guidance
from score_sde.config import from_config
from score_sde.run import experiment, modes
from tests.helpers import tiny_config

METHODS = ("pc", "ode", "ddim")
# the module's runs are trained once, on one xdist worker (tests/conftest.py, _MODULE_FIXTURES)


def _train(workdir, **fields):
    modes.run("train", tiny_config("launch", **fields), str(workdir), stream=io.StringIO())
    return str(workdir)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{'model': the tiny toy run, 'small': the same data with a narrower network,
    'wide3d': points in 3 dimensions}."""
    root = tmp_path_factory.mktemp("autoguide")
    points = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    np.savez(root / "points.npz", x_train=points, x_test=points)
    return {
        "model": _train(root / "model", **{"model.nf": 32}),
        "small": _train(root / "small", **{"model.nf": 16}),
        "wide3d": _train(
            root / "wide3d",
            **{"data.dataset": "npz", "data.path": str(root / "points.npz"), "data.dim": 3},
        ),
    }


def _sample(workdir, method, **sampling):
    fields = {"sampling.method": method, "sampling.num_steps": 4 if method == "ddim" else 0}
    fields.update({f"sampling.{k}": v for k, v in sampling.items()})
    c = tiny_config("launch", **{"model.nf": 32, **fields})
    return np.asarray(modes.run("sample", c, workdir, stream=io.StringIO(), overwrite=True))


@pytest.mark.parametrize("method", METHODS)
def test_weight_one_is_the_model_alone_bit_for_bit(runs, method):
    plain = _sample(runs["model"], method)
    guided = _sample(runs["model"], method, guide=runs["small"], guide_weight=1.0)
    assert np.isfinite(plain).all()
    np.testing.assert_array_equal(guided, plain)


def test_a_narrower_guide_samples_the_autoguided_score(runs):
    w = 2.0
    guided = _sample(runs["model"], "pc", guide=runs["small"], guide_weight=w)
    plain = _sample(runs["model"], "pc")
    assert np.isfinite(guided).all()
    assert np.abs(guided - plain).max() > 1e-3

    # by hand: the two restored models, guidance.autoguided_score, the same sampler and key
    exp, params, step = experiment.restore(runs["model"])
    g_exp, g_params, _ = experiment.restore(runs["small"])
    assert g_exp.cfg.model.nf != exp.cfg.model.nf
    cfg = from_config(tiny_config("launch", **{"model.nf": 32}))
    exp = experiment.build(cfg)
    num = cfg.sampling.num_samples
    sampler = exp.sampler("pc", exp.round_size(num, cfg.sampling.batch_size))
    score = guidance.autoguided_score(exp.score_fn(params), g_exp.score_fn(g_params), w)
    key = jax.random.fold_in(jax.random.fold_in(exp.key(experiment.KEY_SAMPLES), step), 2)
    x, _ = jax.jit(lambda k: sampler(k, score, None, None))(jax.random.fold_in(key, 0))
    np.testing.assert_allclose(guided, np.asarray(x)[:num], rtol=1e-4, atol=1e-4)


def test_a_guide_interval_outside_the_samplers_times_is_the_model_alone(runs):
    plain = _sample(runs["model"], "ode")
    guided = _sample(
        runs["model"], "ode", guide=runs["small"], guide_weight=3.0, guide_interval=(2.0, 3.0)
    )
    np.testing.assert_array_equal(guided, plain)


def test_the_python_api_takes_the_guide_as_a_sampler_option(runs):
    from score_sde.api import load

    model, key = load(runs["model"]), jax.random.key(1)
    plain = model.sample(key, 16, "ddim", num_steps=4)
    same = model.sample(key, 16, "ddim", num_steps=4, guide=runs["small"], guide_weight=1.0)
    guided = model.sample(key, 16, "ddim", num_steps=4, guide=runs["small"], guide_weight=2.0)
    np.testing.assert_array_equal(same, plain)
    assert np.isfinite(guided).all() and np.abs(guided - plain).max() > 1e-3


def test_a_guide_of_other_data_is_refused_naming_the_field(runs):
    with pytest.raises(ValueError) as e:
        _sample(runs["model"], "pc", guide=runs["wide3d"])
    message = str(e.value)
    assert message.startswith("config.sampling.guide (")
    assert "data shape [3]" in message and "[2]" in message
    assert "\n" not in message


def test_a_missing_guide_is_refused_naming_the_field(runs, tmp_path):
    with pytest.raises(ValueError, match=r"^config\.sampling\.guide: .*config\.json not found"):
        _sample(runs["model"], "pc", guide=str(tmp_path / "nowhere"))


@pytest.mark.parametrize(
    "field, value, needle",
    [
        ("guide_interval", (0.5,), "config.sampling.guide_interval"),
        ("guide_interval", (0.8, 0.2), "config.sampling.guide_interval"),
        ("guide_weight", float("nan"), "config.sampling.guide_weight"),
        ("guide_step", -2, "config.sampling.guide_step"),
    ],
)
def test_bad_guide_settings_name_the_field(field, value, needle):
    with pytest.raises(ValueError, match=needle.replace(".", r"\.")):
        from_config(tiny_config("launch", **{f"sampling.{field}": value}))
