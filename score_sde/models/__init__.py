"""Score networks. One entry point: `init_model(model, data, key) -> (apply_fn, params)`.

`model` is config.model (its `family` picks the network, score_sde.config.families), `data`
config.data (the example shape and centering): any objects with the attributes of
`score_sde.models.spec`. Every network is run functionally:
    apply_fn(params, x, labels, *, train=False, rng=None, class_labels=None) -> out  (out like x)
where `params` is the plain pytree (an `nnx.State`) returned by `nnx.split`, `labels` [B] are the
float noise-level labels of `score_sde.score_fn`, `rng` is the dropout key (needed when train=True
and dropout > 0), and `class_labels` [B] int are optional classes (index num_classes = null label).
"""

from __future__ import annotations

import functools

import jax
from flax import nnx

from score_sde.models.spec import DataSpec, ModelSpec

FAMILIES = ("ncsnpp", "ddpm", "ncsnv2", "mlp", "uvit", "dit")


def build_module(model: ModelSpec, data: DataSpec, key: jax.Array) -> nnx.Module:
    """The NNX module of `model`'s family, for data shaped as `data`, initialized from key."""
    from score_sde.models.layers import KeyGen

    rngs = KeyGen(key)
    match model.family:
        case "mlp":
            from score_sde.models.mlp import MLP

            return MLP(model, data, rngs=rngs)
        case "ncsnpp":
            from score_sde.models.ncsnpp import NCSNpp

            return NCSNpp(model, data, rngs=rngs)
        case "ddpm":
            from score_sde.models.ddpm import DDPM

            return DDPM(model, data, rngs=rngs)
        case "ncsnv2":
            from score_sde.models.ncsnv2 import NCSNv2

            return NCSNv2(model, data, rngs=rngs)
        case "uvit":
            from score_sde.models.uvit import UViT

            return UViT(model, data, rngs=rngs)
        case "dit":
            from score_sde.models.dit import DiT

            return DiT(model, data, rngs=rngs)
    raise ValueError(
        f"no network for config.model family {model.family!r} ({model.name!r}); the families: "
        + ", ".join(FAMILIES)
    )


def make_apply_fn(graphdef):
    """The pure function apply_fn(params, x, labels, ...) for a module's graph definition."""

    def apply_fn(params, x, labels, *, train=False, rng=None, class_labels=None):
        model = nnx.merge(graphdef, params)
        return model(x, labels, train=train, rng=rng, class_labels=class_labels)

    return apply_fn


def init_model(model: ModelSpec, data: DataSpec, key: jax.Array):
    """Builds the network of `model`; returns (apply_fn, params)."""
    graphdef, params = nnx.split(build_module(model, data, key))
    return make_apply_fn(graphdef), params


def _cached(fn):
    """`fn(model, data)` memoized on equal (hashable) configs: tracing a large network's init
    takes seconds, and a run, the launcher's dry run and the tests ask for the same one often.
    Each call gets its own copy of the pytree (callers may fill an nnx.State in place)."""
    memo = functools.lru_cache(maxsize=64)(fn)

    @functools.wraps(fn)
    def wrapper(model, data):
        try:
            hash((model, data))
        except TypeError:  # a spec that is not a frozen dataclass
            return fn(model, data)
        return jax.tree.map(lambda leaf: leaf, memo(model, data))

    return wrapper


@_cached
def abstract_model(model: ModelSpec, data: DataSpec):
    """(apply_fn, init_params(key) -> params) without computing any parameter (eval_shape)."""
    module = nnx.eval_shape(lambda: build_module(model, data, jax.random.key(0)))
    return make_apply_fn(nnx.split(module)[0]), lambda key: init_model(model, data, key)[1]


@_cached
def abstract_params(model: ModelSpec, data: DataSpec):
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
