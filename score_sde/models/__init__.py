"""Score networks. One entry point: `init_model(model, data, key) -> (apply_fn, params)`.

`model` is the typed config.model of the network's family (`score_sde.config`), `data` the typed
config.data (the example shape and centering). Every network is run functionally:
    apply_fn(params, x, labels, *, train=False, rng=None, class_labels=None) -> out  (out like x)
where `params` is the plain pytree (an `nnx.State`) returned by `nnx.split`, `labels` [B] are the
float noise-level labels of `score_sde.score_fn`, `rng` is the dropout key (needed when train=True
and dropout > 0), and `class_labels` [B] int are optional classes (index num_classes = null label).
"""

from __future__ import annotations

import jax
from flax import nnx

from score_sde.config import (
    FAMILIES,
    DataConfig,
    DDPMConfig,
    MLPConfig,
    ModelConfig,
    NCSNppConfig,
    NCSNv2Config,
)


def build_module(model: ModelConfig, data: DataConfig, key: jax.Array) -> nnx.Module:
    """The NNX module of `model`'s family, for data shaped as `data`, initialized from key."""
    from score_sde.models.layers import KeyGen

    rngs = KeyGen(key)
    match model:
        case MLPConfig():
            from score_sde.models.mlp import MLP

            return MLP(model, data, rngs=rngs)
        case NCSNppConfig():
            from score_sde.models.ncsnpp import NCSNpp

            return NCSNpp(model, data, rngs=rngs)
        case DDPMConfig():
            from score_sde.models.ddpm import DDPM

            return DDPM(model, data, rngs=rngs)
        case NCSNv2Config():
            from score_sde.models.ncsnv2 import NCSNv2

            return NCSNv2(model, data, rngs=rngs)
    raise ValueError(
        f"no network for config.model of type {type(model).__name__}; config.model.name must be "
        "one of " + ", ".join(FAMILIES)
    )


def make_apply_fn(graphdef):
    """The pure function apply_fn(params, x, labels, ...) for a module's graph definition."""

    def apply_fn(params, x, labels, *, train=False, rng=None, class_labels=None):
        model = nnx.merge(graphdef, params)
        return model(x, labels, train=train, rng=rng, class_labels=class_labels)

    return apply_fn


def init_model(model: ModelConfig, data: DataConfig, key: jax.Array):
    """Builds the network of `model`; returns (apply_fn, params)."""
    graphdef, params = nnx.split(build_module(model, data, key))
    return make_apply_fn(graphdef), params


def abstract_model(model: ModelConfig, data: DataConfig):
    """(apply_fn, init_params(key) -> params) without computing any parameter (eval_shape)."""
    module = nnx.eval_shape(lambda: build_module(model, data, jax.random.key(0)))
    return make_apply_fn(nnx.split(module)[0]), lambda key: init_model(model, data, key)[1]


def abstract_params(model: ModelConfig, data: DataConfig):
    """Parameter shapes/dtypes (jax.ShapeDtypeStruct pytree) without allocating anything."""
    return jax.eval_shape(lambda k: init_model(model, data, k)[1], jax.random.key(0))


def count_params(params) -> int:
    """Total number of scalars in a params pytree (concrete or abstract)."""
    return sum(int(x.size) for x in jax.tree.leaves(params))


__all__ = [
    "abstract_model",
    "abstract_params",
    "build_module",
    "count_params",
    "init_model",
    "make_apply_fn",
]
