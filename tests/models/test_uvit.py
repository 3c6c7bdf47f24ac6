"""U-ViT (score_sde/models/uvit.py): the published size by abstract init, shapes for several
patch sizes and channel counts, the class token and its null label, the long skips, and one
training step of configs/digits/uvit.py through the real training path and the launcher."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from score_sde import config as config_lib
from score_sde import models
from score_sde.config import DataConfig, UViTConfig
from score_sde.run import experiment, train
from tests.helpers import ROOT, launch_two_steps

CIFAR10 = DataConfig(dataset="CIFAR10", image_size=32, num_channels=3, centered=True)


def uvit_params(*, D, depth, p, C, image_size, num_classes=0, mlp_time_embed=False, conv=True):
    """The parameter count of baofff/U-ViT `libs/uvit.py` UViT, by hand from its modules:
    patch_embed Conv2d(C, D, p, p); time_embed Linear(D, 4D)-SiLU-Linear(4D, D) or Identity;
    label_emb Embedding(K, D) (K counts the null label); pos_embed [1, extras + N, D];
    depth // 2 in blocks, 1 mid block, depth // 2 out blocks, each
    norm1 + norm2 (2 x 2D), qkv Linear(D, 3D, bias=False), proj Linear(D, D), mlp fc1 (D, 4D),
    fc2 (4D, D) = 12 D^2 + 10 D, an out block also skip_linear Linear(2D, D);
    norm (2D), decoder_pred Linear(D, p^2 C), final_layer Conv2d(C, C, 3)."""
    n_patches = (image_size // p) ** 2
    extras = 2 if num_classes else 1
    block = 12 * D * D + 10 * D
    n_blocks = 2 * (depth // 2) + 1
    return (
        (p * p * C * D + D)
        + ((D * 4 * D + 4 * D) + (4 * D * D + D) if mlp_time_embed else 0)
        + num_classes * D
        + (extras + n_patches) * D
        + n_blocks * block
        + (depth // 2) * (2 * D * D + D)
        + 2 * D
        + (D * p * p * C + p * p * C)
        + ((9 * C * C + C) if conv else 0)
    )


def test_uvit_s2_cifar10_has_the_published_44m_parameters():
    """U-ViT-S/2 (the paper's CIFAR-10 model: D 512, 13 blocks, 8 heads, no qkv bias, no time
    MLP): ours 44,255,328 = the original's module structure counted by hand = the paper's 44M."""
    m = UViTConfig(name="uvit")  # the defaults are U-ViT-S/2
    ours = models.count_params(models.abstract_params(m, CIFAR10))
    by_hand = uvit_params(D=512, depth=12, p=2, C=3, image_size=32)
    assert ours == by_hand == 44_255_328
    assert round(ours / 1e6) == 44
    # depth 13 (the paper's layer count) builds the same 6 + 1 + 6 blocks
    deep = UViTConfig(name="uvit", depth=13)
    assert models.count_params(models.abstract_params(deep, CIFAR10)) == ours


@pytest.mark.parametrize(
    "kw",
    [
        dict(num_classes=10),
        dict(mlp_time_embed=True, qkv_bias=True),
        dict(conv=False, depth=3),
    ],
)
def test_small_counts_match_the_formula(kw):
    m = UViTConfig(name="uvit", embed_dim=32, depth=kw.pop("depth", 4), num_heads=4, **kw)
    data = DataConfig(dataset="x", image_size=8, num_channels=2, centered=True)
    ours = models.count_params(models.abstract_params(m, data))
    qkv_bias = 3 * 32 * (2 * (m.depth // 2) + 1) if m.qkv_bias else 0
    formula = uvit_params(
        D=32,
        depth=m.depth,
        p=2,
        C=2,
        image_size=8,
        num_classes=m.num_classes + 1 if m.num_classes else 0,
        mlp_time_embed=m.mlp_time_embed,
        conv=m.conv,
    )
    assert ours == formula + qkv_bias


@pytest.mark.parametrize("patch_size,channels,image_size", [(1, 1, 4), (2, 3, 8), (4, 2, 8)])
def test_output_has_the_input_shape(patch_size, channels, image_size):
    m = UViTConfig(name="uvit", patch_size=patch_size, embed_dim=32, depth=2, num_heads=2)
    data = DataConfig(dataset="x", image_size=image_size, num_channels=channels, centered=True)
    apply_fn, params = models.init_model(m, data, jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (3, image_size, image_size, channels))
    out = jax.jit(apply_fn)(params, x, jnp.array([1.0, 500.0, 999.0]))
    assert out.shape == x.shape and np.isfinite(np.asarray(out)).all()


def test_class_token_changes_the_output_and_the_null_label_works():
    m = UViTConfig(name="uvit", embed_dim=32, depth=2, num_heads=2, num_classes=3)
    data = DataConfig(dataset="x", image_size=4, num_channels=1, centered=True)
    apply_fn, params = models.init_model(m, data, jax.random.key(0))
    apply_fn = jax.jit(apply_fn)
    x = jnp.broadcast_to(jax.random.normal(jax.random.key(1), (1, 4, 4, 1)), (4, 4, 4, 1))
    t = jnp.full((4,), 300.0)
    out = np.asarray(apply_fn(params, x, t, class_labels=jnp.arange(4)))  # 3 = the null label
    for i in range(4):
        for j in range(i):
            assert not np.allclose(out[i], out[j]), (i, j)
    unlabeled = np.asarray(apply_fn(params, x, t))  # None: the null label
    np.testing.assert_allclose(unlabeled, np.broadcast_to(out[3], unlabeled.shape), rtol=1e-6)


def test_long_skips_one_skip_linear_per_out_block():
    for depth in (2, 5, 12, 13):
        m = UViTConfig(name="uvit", embed_dim=16, depth=depth, num_heads=2)
        data = DataConfig(dataset="x", image_size=4, num_channels=1, centered=True)
        module = nnx.eval_shape(lambda m=m, d=data: models.build_module(m, d, jax.random.key(0)))
        linears = [
            path
            for path, node in nnx.iter_graph(module)
            if isinstance(node, nnx.Linear) and path[-1] == "skip_linear"
        ]
        assert len(module.in_blocks) == len(module.out_blocks) == depth // 2
        assert len(linears) == depth // 2, (depth, linears)
        assert all(b.skip_linear is None for b in [*module.in_blocks, module.mid_block])


def test_time_labels_change_the_output():
    m = UViTConfig(name="uvit", embed_dim=32, depth=2, num_heads=2)
    data = DataConfig(dataset="x", image_size=4, num_channels=1, centered=True)
    apply_fn, params = models.init_model(m, data, jax.random.key(0))
    x = jnp.ones((2, 4, 4, 1))
    out = np.asarray(jax.jit(apply_fn)(params, x, jnp.array([1.0, 900.0])))
    assert not np.allclose(out[0], out[1])


def test_an_indivisible_patch_size_is_refused():
    m = UViTConfig(name="uvit", patch_size=3, embed_dim=16, depth=2, num_heads=2)
    data = DataConfig(dataset="x", image_size=8, num_channels=1, centered=True)
    with pytest.raises(ValueError, match=r"config\.model\.patch_size \(3\) must divide"):
        models.abstract_params(m, data)
    with pytest.raises(ValueError, match=r"num_heads \(3\) must divide config\.model\.embed_dim"):
        UViTConfig(name="uvit", embed_dim=16, num_heads=3)


def _one_training_step(rel: str) -> float:
    """One optimizer step of configs/<rel> through run.train.train_step; its loss."""
    cfg = config_lib.from_config(config_lib.load_file(str(ROOT / "configs" / rel)))
    exp = experiment.build(cfg)
    state = exp.new_state()
    x = jax.random.uniform(jax.random.key(2), (8, *cfg.data.shape), minval=-1.0, maxval=1.0)
    step = jax.jit(
        lambda s, b: train.train_step(
            s, b, loss_fn=exp.loss_fn(train=True), tx=exp.tx, ema_rate=cfg.model.ema_rate
        )
    )
    new, metrics = step(state, {"x": x})
    assert int(new.step) == 1
    return float(metrics["loss"])


@pytest.mark.slow
def test_one_training_step_of_the_digits_config_has_a_finite_loss():
    loss = _one_training_step("digits/uvit.py")
    assert np.isfinite(loss) and 0.0 < loss < 10.0


@pytest.mark.slow
def test_launch_trains_the_digits_config(tmp_path):
    proc = launch_two_steps("configs/digits/uvit.py", tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.parametrize(
    "sde,continuous,preconditioning",
    [
        ("vpsde", True, "none"),
        ("vpsde", False, "none"),
        ("subvpsde", True, "none"),
        ("vesde", True, "none"),
        ("flow", True, "none"),
        ("vesde", True, "edm"),
    ],
)
def test_every_sde_gets_a_finite_score(sde, continuous, preconditioning):
    """The network plugs into each SDE's score function (score_fn) as the U-Nets do."""
    config = config_lib.load_file(str(ROOT / "configs" / "digits/uvit.py"))
    config.training.sde, config.training.continuous = sde, continuous
    if sde == "flow":
        config.training.loss = "flow_matching"
    config.model.update(dict(embed_dim=16, depth=2, num_heads=2))
    if preconditioning != "none":
        config.model.preconditioning = preconditioning
    exp = experiment.build(config_lib.from_config(config))
    score_fn = jax.jit(exp.score_fn(exp.init_params(jax.random.key(0))))
    x = jax.random.normal(jax.random.key(1), (2, *exp.shape))
    out = np.asarray(score_fn(x, jnp.array([0.1, 0.9])))
    assert out.shape == x.shape and np.isfinite(out).all()
