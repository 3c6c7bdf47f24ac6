"""Every shipped config builds its experiment through the real boundary, and each model family
runs a real train step through the launcher's mode on a width-reduced variant.

The experiment is built abstractly (the whole train state, optimizer included, by jax.eval_shape);
the train steps use a tiny random image dataset written as an .npz in the real format.
"""

import io
import json
import pathlib

import jax
import numpy as np
import pytest

from score_sde import config, models, parallel
from score_sde.run import experiment, modes, train
from tests.helpers import ROOT

SHIPPED = sorted(
    str(p.relative_to(ROOT))
    for p in (ROOT / "configs").rglob("*.py")
    if "def get_config" in p.read_text()
)


@pytest.mark.slow
@pytest.mark.parametrize("path", SHIPPED)
def test_every_config_builds_its_experiment(path):
    cfg = config.load(str(ROOT / path))
    exp = experiment.build(cfg, parallel.make_mesh(1))
    state = exp.state_like()  # params, optimizer state, EMA, key: shapes only
    n = models.count_params(state.params)
    assert n == models.count_params(models.abstract_params(cfg.model, cfg.data)) > 0
    assert models.count_params(state.ema_params) == n
    assert state.step.shape == () and state.params is not state.ema_params


# One published config per family, shrunk: (config, overrides).
UNET = {"model.ch_mult": "(1,2)", "model.num_res_blocks": "1", "model.attn_resolutions": "(8,)"}
FAMILIES = {
    "ncsnpp (NCSN++, VE, FIR)": (
        "configs/ve/cifar10_ncsnpp_continuous.py",
        {"model.nf": "8", **UNET},
    ),
    "ncsnpp (DDPM++, VP discrete)": ("configs/vp/cifar10_ddpmpp.py", {"model.nf": "8", **UNET}),
    "ddpm": ("configs/vp/ddpm/cifar10.py", {"model.nf": "32", **UNET}),
    "ncsn": ("configs/ve/ncsn/cifar10.py", {"model.nf": "8"}),
    "ncsnv2": ("configs/ve/ncsnv2/cifar10.py", {"model.nf": "8"}),
    "mlp": ("configs/toy/gmm.py", {"model.nf": "16", "model.num_layers": "1"}),
}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """16x16 RGB uint8 images as the npz dataset format (x_train, x_test)."""
    path = tmp_path_factory.mktemp("data") / "images.npz"
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (24, 16, 16, 3), np.uint8)
    np.savez(path, x_train=x[:16], x_test=x[16:])
    return str(path)


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_family_runs_a_train_step_through_the_launcher(family, images, tmp_path):
    path, shrink = FAMILIES[family]
    overrides = {
        "training.batch_size": "4",
        "training.n_iters": "1",
        "training.snapshot_sampling": "False",
        "training.eval_after_training": "False",
        "model.ema_rate": "0.5",  # NCSN's 0 (no EMA) would hide whether the step moved params
        **shrink,
    }
    if "toy" not in path:
        overrides |= {"data.dataset": "npz", "data.path": images, "data.image_size": "16"}
    cfg = config.load(str(ROOT / path), overrides)
    state = modes.run("train", cfg, str(tmp_path), stream=io.StringIO())
    assert int(parallel.to_host(state.step)) == 1
    assert (tmp_path / "checkpoints" / "1").is_dir()
    records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    losses = [r["training_loss"] for r in records if "training_loss" in r]
    assert len(losses) == 1 and np.isfinite(losses[0]) and losses[0] > 0
    # the step moved the parameters away from their initialization: after one step
    # ema = r init + (1 - r) params, so params - ema = r (params - init)
    moved = jax.tree.map(
        lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max()),
        parallel.to_host(state.params),
        parallel.to_host(state.ema_params),
    )
    assert max(jax.tree.leaves(moved)) > 0
    assert json.load(open(tmp_path / "config.json"))["model"]["name"] == cfg.model.name


def _assert_bit_identical(x, y):
    """Two train states hold the same bits, leaf for leaf (PRNG keys by their key data)."""
    for a, b in zip(jax.tree.leaves(x), jax.tree.leaves(y), strict=True):
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_new_state_compiles_its_init_once():
    """A second new_state() reuses the first one's compiled init (it cost a compile per call: four
    in benchmarks/train_step.py) and gives the same state bit for bit."""
    cfg = config.load(str(ROOT / "configs/toy/gmm.py"))
    exp = experiment.build(cfg, parallel.make_mesh(1))
    first, second = exp.new_state(), exp.new_state()
    assert exp._init_state._cache_size() == 1
    _assert_bit_identical(first, second)
    assert experiment.build(cfg, parallel.make_mesh(1))._init_state is not exp._init_state


def test_the_init_compiled_at_level_1_equals_the_default_compile():
    """The init is compiled at XLA's backend optimization level 1 (half the compile time): its
    state equals, bit for bit, the same init compiled at the default level (the digits DDPM++:
    variance-scaling and zero inits, Adam's state, EMA; NCSN, NCSNv2, NCSN++ and DDPM were checked
    the same way by hand, 30 s of compiling each)."""
    cfg = config.load(str(ROOT / "configs/digits/ddpmpp.py"), {"model.nf": "8"})
    exp = experiment.build(cfg, parallel.make_mesh(1))
    fast = exp.new_state()
    init = train.make_init_state(exp.init_params, exp.tx, exp.mesh)
    default = jax.jit(init.__wrapped__)(exp.key(experiment.KEY_INIT))
    _assert_bit_identical(fast, default)


def test_the_ode_samplers_tolerance_and_the_langevin_rule_are_set_from_the_command_line():
    """--config.sampling.rtol/atol reach the probability-flow ODE (fewer score evaluations at a
    looser tolerance), and --config.sampling.langevin_norm the PC sampler's corrector; the
    published configs use the original code's rule, the toys ours."""
    path = str(ROOT / "configs" / "toy" / "gmm.py")
    score_fn = lambda x, t: -x / (1.0 + t[:, None])
    nfes = {}
    for tol in ("1e-2", "1e-5"):
        cfg = config.load(
            path, {"sampling.method": "ode", "sampling.rtol": tol, "sampling.atol": tol}
        )
        assert cfg.sampling.rtol == float(tol)
        exp = experiment.build(cfg, parallel.make_mesh())
        nfes[tol] = int(exp.sampler("ode", 64)(jax.random.key(0), score_fn, None, None)[1])
    assert nfes["1e-2"] < nfes["1e-5"], nfes

    draws = {}
    for norm in ("batch", "mean_per_device"):
        cfg = config.load(path, {"sampling.langevin_norm": norm, "model.num_scales": "40"})
        exp = experiment.build(cfg, parallel.make_mesh())
        draws[norm] = np.asarray(exp.sampler("pc", 64)(jax.random.key(0), score_fn, None, None)[0])
    assert not np.allclose(draws["batch"], draws["mean_per_device"])
    with pytest.raises(ValueError, match="config.sampling.langevin_norm"):
        config.load(path, {"sampling.langevin_norm": "rms"})
    configs = pathlib.Path(path).parents[1]
    assert config.load(
        str(configs / "vp" / "cifar10_ddpmpp_continuous.py"), {}
    ).sampling.langevin_norm == ("mean_per_device")
    assert config.load(str(configs / "digits" / "ddpmpp.py"), {}).sampling.langevin_norm == "batch"
