"""Score networks. One entry point: `init_model(config, key) -> (apply_fn, params)`.

Every network is run functionally:
    apply_fn(params, x, labels, *, train=False, rng=None, class_labels=None) -> out  (out like x)
where `params` is the plain pytree (an `nnx.State`) returned by `nnx.split`, `labels` [B] are the
float noise-level labels of `score_sde.score_fn`, `rng` is the dropout key (needed when train=True
and dropout > 0), and `class_labels` [B] int are optional classes (index num_classes = null label).
"""

from __future__ import annotations

import jax
from flax import nnx


def data_shape(config) -> tuple[int, ...]:
    """Shape of one example: (dim,) for toy data (config.data.dim), else (H, W, C)."""
    dim = config.data.get("dim")
    if dim is not None:
        return (int(dim),)
    return (config.data.image_size, config.data.image_size, config.data.num_channels)


MODEL_NAMES = ("mlp", "ncsnpp", "ddpm", "ncsnv2", "ncsnv2_64", "ncsnv2_128", "ncsnv2_256", "ncsn")


def build_module(config, key: jax.Array) -> nnx.Module:
    """The NNX module selected by config.model.name, initialized from key."""
    from score_sde.models.layers import KeyGen

    rngs = KeyGen(key)
    name = config.model.name
    match name:
        case "mlp":
            from score_sde.models import mlp

            shape = data_shape(config)
            if len(shape) != 1:
                raise ValueError(
                    f"config.model.name='mlp' needs vector data; data shape is {shape}: "
                    "set config.data.dim or use an image model"
                )
            return mlp.MLP(mlp.MLPConfig.from_config(config, shape[0]), rngs=rngs)
        case "ncsnpp":
            from score_sde.models import ncsnpp

            return ncsnpp.NCSNpp(ncsnpp.NCSNppConfig.from_config(config), rngs=rngs)
        case "ddpm":
            from score_sde.models import ddpm

            return ddpm.DDPM(ddpm.DDPMConfig.from_config(config), rngs=rngs)
        case "ncsnv2" | "ncsnv2_64" | "ncsnv2_128" | "ncsnv2_256":
            from score_sde.models import ncsnv2

            return ncsnv2.NCSNv2(ncsnv2.NCSNv2Config.from_config(config), rngs=rngs)
        case "ncsn":
            from score_sde.models import ncsnv2

            return ncsnv2.NCSN(ncsnv2.NCSNv2Config.from_config(config), rngs=rngs)
        case _:
            raise ValueError(
                f"config.model.name ({name!r}) is not a known model; valid names: {MODEL_NAMES}"
            )


def make_apply_fn(graphdef):
    """The pure function apply_fn(params, x, labels, ...) for a module's graph definition."""

    def apply_fn(params, x, labels, *, train=False, rng=None, class_labels=None):
        model = nnx.merge(graphdef, params)
        return model(x, labels, train=train, rng=rng, class_labels=class_labels)

    return apply_fn


def init_model(config, key: jax.Array):
    """Builds the network of config.model.name; returns (apply_fn, params)."""
    graphdef, params = nnx.split(build_module(config, key))
    return make_apply_fn(graphdef), params


def get_model(config, key: jax.Array | None = None):
    """Alias of init_model (key defaults to jax.random.key(config.seed))."""
    if key is None:
        key = jax.random.key(config.seed)
    return init_model(config, key)


def abstract_params(config):
    """Parameter shapes/dtypes (jax.ShapeDtypeStruct pytree) without allocating anything."""
    return jax.eval_shape(lambda k: nnx.split(build_module(config, k))[1], jax.random.key(0))


def count_params(params) -> int:
    """Total number of scalars in a params pytree (concrete or abstract)."""
    return sum(int(x.size) for x in jax.tree.leaves(params))


__all__ = ["MODEL_NAMES", "abstract_params", "build_module", "count_params", "data_shape",
           "get_model", "init_model", "make_apply_fn"]
