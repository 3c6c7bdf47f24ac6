"""MLP score network: shapes, finiteness, gradients, determinism, conditioning, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from score_sde import config, models
from score_sde.config import DataConfig, MLPConfig

DATA = DataConfig(dataset="toy/test", dim=2)


def _model(**model) -> MLPConfig:
    base = dict(
        name="mlp", nf=32, num_layers=2, embedding_type="fourier", fourier_scale=16.0, dropout=0.1
    )
    return MLPConfig(**{**base, **model})


@pytest.mark.parametrize("embedding_type", ["fourier", "positional"])
@pytest.mark.parametrize("num_classes", [0, 3])
def test_mlp_shapes_finite_grads(embedding_type, num_classes):
    m = _model(embedding_type=embedding_type, num_classes=num_classes)
    apply_fn, params = models.init_model(m, DATA, jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (6, 2))
    labels = jnp.linspace(0.1, 5.0, 6)
    cls = jnp.arange(6) % 4 if num_classes else None  # includes null label 3
    out = jax.jit(lambda p, x, lab: apply_fn(p, x, lab, class_labels=cls))(params, x, labels)
    assert out.shape == x.shape and np.isfinite(np.asarray(out)).all()

    def loss(p):
        o = apply_fn(p, x, labels, train=True, rng=jax.random.key(2), class_labels=cls)
        return jnp.sum((o - x) ** 2)

    grads = jax.grad(loss)(params)
    leaves = jax.tree.leaves(grads)
    assert all(np.isfinite(np.asarray(g)).all() for g in leaves)
    assert sum(float(jnp.abs(g).sum()) for g in leaves) > 0
    assert models.count_params(params) == models.count_params(models.abstract_params(m, DATA))


def test_mlp_deterministic_given_key_and_dropout_uses_rng():
    m = _model()
    f, p1 = models.init_model(m, DATA, jax.random.key(0))
    _, p2 = models.init_model(m, DATA, jax.random.key(0))
    _, p3 = models.init_model(m, DATA, jax.random.key(1))
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2), strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p3), strict=True)
    )
    x, lab = jnp.ones((4, 2)), jnp.ones((4,))
    # dropout is off at eval; on in training, deterministic given the key
    np.testing.assert_array_equal(f(p1, x, lab), f(p1, x, lab))
    with pytest.raises(ValueError, match="rng"):
        f(p1, x, lab, train=True)


def test_data_shape_and_unknown_name():
    # the example shape is the typed config.data's; model names are score_sde.config.FAMILIES
    assert DATA.shape == (2,)
    img = DataConfig(dataset="test", image_size=8, num_channels=3)
    assert img.shape == (8, 8, 3)
    assert "mlp" in config.FAMILIES
    with pytest.raises(ValueError, match="valid names"):
        config.section_class("model", {"name": "unet9000"})  # as config.model is read
    with pytest.raises(ValueError, match="embedding_type"):
        _model(embedding_type="learned")
    with pytest.raises(ValueError, match="vector data"):
        models.init_model(_model(), img, jax.random.key(0))
