"""DiT (score_sde/models/dit.py): DiT-S/2 and DiT-XL/2 sizes by abstract init against the
original's module structure and the paper, shapes, class conditioning and its null label,
adaLN-Zero's exact zero output at initialization, and one training step of configs/digits/dit.py
through the real training path and the launcher."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from score_sde import config as config_lib
from score_sde import models
from score_sde.config import DataConfig, DiTConfig
from score_sde.models.transformer import sincos_pos_embed_2d
from score_sde.run import experiment, train
from tests.helpers import ROOT, launch_two_steps

# DiT's ImageNet 256x256 setting: 32x32x4 latents, 1000 classes, label dropout, learn_sigma
LATENTS = DataConfig(dataset="x", image_size=32, num_channels=4, centered=True)


def dit_params(*, H, depth, p, C, num_classes, learn_sigma, mlp_ratio=4):
    """The trainable parameters of facebookresearch/DiT `models.py` DiT, by hand: x_embedder
    Conv2d(C, H, p, p); t_embedder Linear(256, H)-SiLU-Linear(H, H); y_embedder Embedding(
    num_classes + 1, H) (the CFG row); per DiTBlock (norms without affine): qkv Linear(H, 3H),
    proj Linear(H, H), fc1 Linear(H, rH), fc2 Linear(rH, H), adaLN_modulation Linear(H, 6H);
    FinalLayer: linear Linear(H, p^2 C_out), adaLN_modulation Linear(H, 2H)."""
    out = 2 * C if learn_sigma else C
    r = mlp_ratio
    block = (3 * H * H + 3 * H) + (H * H + H) + (r * H * H + r * H) + (r * H * H + H)
    block += 6 * H * H + 6 * H
    return (
        (p * p * C * H + H)
        + (256 * H + H + H * H + H)
        + ((num_classes + 1) * H if num_classes else 0)
        + depth * block
        + (H * p * p * out + p * p * out)
        + (2 * H * H + 2 * H)
    )


@pytest.mark.parametrize(
    "name,H,depth,heads,ours_expected,published",
    [
        ("DiT-S/2", 384, 12, 6, 32_865_056, 33.0e6),
        ("DiT-XL/2", 1152, 28, 16, 674_834_720, 675e6),
    ],
)
def test_published_sizes(name, H, depth, heads, ours_expected, published):
    """Ours = the original's trainable parameters (formula above). The original also registers
    its fixed sin-cos position embedding [1, 256, H] as an nn.Parameter (requires_grad=False),
    which its printed count includes: ours + 256 H = the published 33.0M / 675M (DiT-S/2:
    32,963,360; DiT-XL/2: 675,129,632). Here it is a constant, not a parameter."""
    m = DiTConfig(
        name="dit", hidden_size=H, depth=depth, num_heads=heads, num_classes=1000, learn_sigma=True
    )
    ours = models.count_params(models.abstract_params(m, LATENTS))
    assert ours == dit_params(H=H, depth=depth, p=2, C=4, num_classes=1000, learn_sigma=True)
    assert ours == ours_expected, name
    with_pos = ours + (32 // 2) ** 2 * H
    assert round(with_pos / 1e6, 1 if published < 1e8 else 0) == published / 1e6, with_pos


def test_small_counts_match_the_formula():
    data = DataConfig(dataset="x", image_size=8, num_channels=3, centered=True)
    for kw in (dict(num_classes=0), dict(num_classes=5, learn_sigma=True, mlp_ratio=2.0)):
        m = DiTConfig(name="dit", hidden_size=32, depth=2, num_heads=4, patch_size=2, **kw)
        ours = models.count_params(models.abstract_params(m, data))
        formula = dit_params(
            H=32,
            depth=2,
            p=2,
            C=3,
            num_classes=m.num_classes,
            learn_sigma=m.learn_sigma,
            mlp_ratio=int(m.mlp_ratio),
        )
        assert ours == formula, kw


def _randomized(params, key):
    """`params` with every leaf redrawn N(0, 0.1^2): adaLN-Zero's zeros no longer hide anything."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(
        tree,
        [0.1 * jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves, strict=True)],
    )


@pytest.mark.parametrize(
    "patch_size,channels,image_size,learn_sigma",
    [(1, 1, 4, False), (2, 3, 8, True), (4, 2, 8, False)],
)
def test_output_has_the_input_shape(patch_size, channels, image_size, learn_sigma):
    m = DiTConfig(
        name="dit",
        patch_size=patch_size,
        hidden_size=32,
        depth=2,
        num_heads=2,
        learn_sigma=learn_sigma,
    )
    data = DataConfig(dataset="x", image_size=image_size, num_channels=channels, centered=True)
    apply_fn, params = models.init_model(m, data, jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (3, image_size, image_size, channels))
    out = jax.jit(apply_fn)(_randomized(params, jax.random.key(2)), x, jnp.array([1.0, 5e2, 999]))
    assert out.shape == x.shape and np.isfinite(np.asarray(out)).all()
    assert np.abs(np.asarray(out)).max() > 0


@pytest.fixture(scope="module")
def conditional():
    """A small class-conditional DiT (3 classes, index 3 = the null label): (apply_fn, params)."""
    m = DiTConfig(name="dit", hidden_size=32, depth=2, num_heads=2, num_classes=3)
    data = DataConfig(dataset="x", image_size=4, num_channels=1, centered=True)
    apply_fn, params = models.init_model(m, data, jax.random.key(0))
    return jax.jit(apply_fn), params


def test_adaln_zero_makes_the_fresh_network_output_exactly_zero(conditional):
    """adaLN-Zero: every block's gates are 0 (blocks are the identity) and the final layer's
    modulation and linear are 0, so the output is exactly 0 for any input, time and class."""
    apply_fn, params = conditional
    x = 10.0 * jax.random.normal(jax.random.key(1), (4, 4, 4, 1))
    out = apply_fn(params, x, jnp.array([0.0, 1.0, 500.0, 999.0]), class_labels=jnp.arange(4))
    assert np.array_equal(np.asarray(out), np.zeros(x.shape, np.float32))


def test_class_labels_change_the_output_and_the_null_label_works(conditional):
    apply_fn, params = conditional
    params = _randomized(params, jax.random.key(3))
    x = jnp.broadcast_to(jax.random.normal(jax.random.key(1), (1, 4, 4, 1)), (4, 4, 4, 1))
    t = jnp.full((4,), 300.0)
    out = np.asarray(apply_fn(params, x, t, class_labels=jnp.arange(4)))  # 3 = the null label
    for i in range(4):
        for j in range(i):
            assert not np.allclose(out[i], out[j]), (i, j)
    unlabeled = np.asarray(apply_fn(params, x, t, class_labels=None))
    np.testing.assert_allclose(unlabeled, np.broadcast_to(out[3], unlabeled.shape), rtol=1e-6)
    times = np.asarray(apply_fn(params, x[:2], jnp.array([1.0, 900.0])))
    assert not np.allclose(times[0], times[1])


def test_the_position_embedding_is_the_2d_sincos_grid():
    """MAE/DiT layout: first half of the features the column (w), second half the row (h), each
    [sin, cos]; token 0 (row 0, column 0) is [0, ..., 0, 1, ..., 1] in each half."""
    pos = sincos_pos_embed_2d(8, 3)
    assert pos.shape == (9, 8)
    np.testing.assert_allclose(pos[0], [0, 0, 1, 1, 0, 0, 1, 1])
    # token 1 is (row 0, column 1): the column half moves, the row half does not
    np.testing.assert_allclose(pos[1, :4], [np.sin(1), np.sin(1e-2), np.cos(1), np.cos(1e-2)])
    np.testing.assert_allclose(pos[1, 4:], pos[0, 4:])
    np.testing.assert_allclose(pos[3, :4], pos[0, :4])  # token 3 = (row 1, column 0)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match=r"num_heads \(5\) must divide config\.model\.hidden_size"):
        DiTConfig(name="dit", hidden_size=32, num_heads=5)
    m = DiTConfig(name="dit", hidden_size=32, depth=1, num_heads=2, patch_size=3)
    with pytest.raises(ValueError, match=r"patch_size \(3\) must divide"):
        models.abstract_params(m, DataConfig(dataset="x", image_size=8, num_channels=1))
    with pytest.raises(ValueError, match="needs images"):
        models.abstract_params(DiTConfig(name="dit"), DataConfig(dataset="toy/gmm", dim=2))


@pytest.mark.slow
def test_one_training_step_of_the_digits_config_has_a_finite_loss():
    """One optimizer step of configs/digits/dit.py through run.train.train_step."""
    cfg = config_lib.from_config(config_lib.load_file(str(ROOT / "configs" / "digits/dit.py")))
    exp = experiment.build(cfg)
    state = exp.new_state()
    x = jax.random.uniform(jax.random.key(2), (8, *cfg.data.shape), minval=-1.0, maxval=1.0)
    loss_fn = exp.loss_fn(train=True)
    step = jax.jit(
        lambda s, b: train.train_step(s, b, loss_fn=loss_fn, tx=exp.tx, ema_rate=cfg.model.ema_rate)
    )
    new, metrics = step(state, {"x": x})
    assert int(new.step) == 1 and np.isfinite(float(metrics["loss"]))
    # the zero-initialized output: the VP noise-prediction loss starts at E|z|^2 = 1
    assert 0.5 < float(metrics["loss"]) < 1.5


@pytest.mark.slow
def test_launch_trains_the_digits_config(tmp_path):
    proc = launch_two_steps("configs/digits/dit.py", tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-3000:]
