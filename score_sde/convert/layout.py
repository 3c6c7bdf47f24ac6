"""Parameter layouts of the published checkpoints <-> this framework's NCSN++ / DDPM parameters.

Our params (`nnx.State.to_pure_dict()`) hold the networks' modules in one list, `all_modules`, in
the order the original code creates them: path ('all_modules', i, *sub, leaf).

- JAX original (flax linen, `optimizer.target` / `params_ema`): module i is named by its class and
  a per-class counter in creation order (`Conv_0`, `ResnetBlockBigGANpp_3`, `NIN_0`, ...); leaves
  keep their names and shapes (conv kernels HWIO, dense kernels [in, out]).
- PyTorch port (`model` state_dict): 'module.all_modules.<i>.<sub>.<leaf>', conv weights OIHW,
  linear weights [out, in], GroupNorm scale -> 'weight'.

`to_*` and `from_*` are exact inverses (bit-identical); `from_*` checks that every leaf is mapped
exactly once and raises one ValueError listing missing keys, unexpected keys and shape mismatches.
"""

from __future__ import annotations

import numpy as np

# class of each all_modules entry -> the original flax module name, per model family
JAX_NAMES = {
    "ncsnpp": {
        "ResnetBlockBigGAN": "ResnetBlockBigGANpp",
        "ResnetBlockDDPM": "ResnetBlockDDPMpp",
        "AttnBlock": "AttnBlockpp",
        "Linear": "Dense",
    },
    "ddpm": {"Linear": "Dense"},
}
TORCH_IGNORED = ("sigmas",)  # buffers of the PyTorch models, not parameters


def flatten(tree, prefix=()) -> dict[tuple, object]:
    """Nested dicts -> {path tuple: leaf}."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(flatten(v, (*prefix, k)))
        else:
            out[(*prefix, k)] = v
    return out


def unflatten(flat: dict[tuple, object]) -> dict:
    """{path tuple: leaf} -> nested dicts."""
    out: dict = {}
    for path, v in flat.items():
        d = out
        for k in path[:-1]:
            d = d.setdefault(k, {})
        d[path[-1]] = v
    return out


def module_classes(config) -> list[str]:
    """Class names of the network's `all_modules`, without computing any parameter."""
    import jax
    from flax import nnx

    from score_sde import models

    family(config)
    module = nnx.eval_shape(
        lambda: models.build_module(config.model, config.data, jax.random.key(0))
    )
    return [type(m).__name__ for m in module.all_modules]


def family(config) -> str:
    name = config.model.name
    if name not in JAX_NAMES:
        raise ValueError(
            f"config.model.name ({name!r}): checkpoint conversion supports {tuple(JAX_NAMES)}"
        )
    return name


def jax_module_names(config) -> list[str]:
    """The flax name of each all_modules entry: f'{original class}_{count of that class so far}'."""
    rename = JAX_NAMES[family(config)]
    counts: dict[str, int] = {}
    names = []
    for cls in module_classes(config):
        cls = rename.get(cls, cls)
        names.append(f"{cls}_{counts.get(cls, 0)}")
        counts[cls] = counts.get(cls, 0) + 1
    return names


# ------------------------------------------------------------------------------ key maps


def _jax_leaf(path: tuple) -> tuple:
    """The original's name of our leaf: its FIR-resampling `Conv2d` (StyleGAN2's layer, under
    Upsample / Downsample) calls its kernel 'weight'; every other leaf keeps its name."""
    if len(path) >= 2 and str(path[-2]).startswith("Conv2d_") and path[-1] == "kernel":
        return (*path[:-1], "weight")
    return path


def _jax_map(like: dict, config) -> dict[tuple, tuple]:
    """Our flat path -> JAX path (shapes are the same)."""
    names = jax_module_names(config)
    out = {}
    for path in flatten(like):
        if path[0] == "all_modules":
            out[path] = _jax_leaf((names[path[1]], *path[2:]))
        else:  # our additions (class_embed) keep their own names
            out[path] = path
    return out


def _torch_leaf(path: tuple, ndim: int) -> tuple[str, str]:
    """(torch leaf name, transform) of our leaf: 'conv' OIHW<->HWIO, 'dense' transpose, 'id'."""
    leaf = path[-1]
    if leaf == "kernel":
        return "weight", "conv" if ndim == 4 else "dense"
    if leaf == "scale":
        return "weight", "id"
    if leaf == "embedding":
        return "weight", "id"
    return leaf, "id"


def _torch_map(like: dict, prefix: str) -> dict[tuple, tuple[str, str]]:
    """Our flat path -> (PyTorch state_dict key, transform)."""
    out = {}
    for path, leaf in flatten(like).items():
        name, how = _torch_leaf(path, len(leaf.shape))
        out[path] = (prefix + ".".join(str(p) for p in (*path[:-1], name)), how)
    return out


def _to_torch(x, how):
    x = np.asarray(x)
    return {"conv": lambda a: a.transpose(3, 2, 0, 1), "dense": lambda a: a.T, "id": lambda a: a}[
        how
    ](x)


def _from_torch(x, how):
    x = np.asarray(x)
    return {"conv": lambda a: a.transpose(2, 3, 1, 0), "dense": lambda a: a.T, "id": lambda a: a}[
        how
    ](x)


def _check(what: str, missing, unexpected, mismatched) -> None:
    if not (missing or unexpected or mismatched):
        return
    parts = [f"{what} does not match this config's network (wrong config or checkpoint?)"]
    if mismatched:
        parts.append(
            f"shape mismatches ({len(mismatched)}): "
            + "; ".join(f"{k}: checkpoint {a} vs model {b}" for k, a, b in mismatched[:10])
            + (" ..." if len(mismatched) > 10 else "")
        )
    if missing:
        parts.append(
            f"missing keys ({len(missing)}): "
            + ", ".join(missing[:20])
            + (" ..." if len(missing) > 20 else "")
        )
    if unexpected:
        parts.append(
            f"unexpected keys ({len(unexpected)}): "
            + ", ".join(unexpected[:20])
            + (" ..." if len(unexpected) > 20 else "")
        )
    raise ValueError("; ".join(parts))


def _expected_shape(like_leaf) -> tuple:
    return tuple(like_leaf.shape)


# ------------------------------------------------------------------------------ JAX original


def to_jax_layout(params: dict, config) -> dict:
    """Our pure params -> the original flax params tree (nested dicts of numpy arrays)."""
    m = _jax_map(params, config)
    return unflatten({m[p]: np.asarray(v) for p, v in flatten(params).items()})


def from_jax_layout(tree: dict, config, like: dict, what: str = "JAX checkpoint") -> dict:
    """Original flax params tree -> our pure params, shaped like `like` (checked)."""
    src = {k: v for k, v in flatten(tree).items()}
    m = _jax_map(like, config)
    out, missing, mismatched, used = {}, [], [], set()
    for path, leaf in flatten(like).items():
        key = m[path]
        name = "/".join(str(k) for k in key)
        if key not in src:
            missing.append(name)
            continue
        used.add(key)
        x = np.asarray(src[key])
        if x.shape != _expected_shape(leaf):
            mismatched.append((name, x.shape, _expected_shape(leaf)))
            continue
        out[path] = x
    unexpected = ["/".join(str(k) for k in key) for key in src if key not in used]
    _check(what, missing, unexpected, mismatched)
    return unflatten(out)


# ------------------------------------------------------------------------------ PyTorch port


def to_torch_layout(params: dict, prefix: str = "module.") -> dict[str, np.ndarray]:
    """Our pure params -> a PyTorch-port `model` state_dict (numpy arrays, OIHW, [out, in])."""
    m = _torch_map(params, prefix)
    return {m[p][0]: _to_torch(v, m[p][1]) for p, v in flatten(params).items()}


def torch_parameter_keys(state_dict: dict) -> list[str]:
    """The state_dict's parameters (buffers such as `sigmas` dropped), in registration order."""
    return [k for k in state_dict if k.rsplit(".", 1)[-1] not in TORCH_IGNORED]


def from_torch_layout(
    state_dict: dict, like: dict, prefix: str | None = None, what: str = "PyTorch checkpoint"
) -> dict:
    """PyTorch-port state_dict -> our pure params, shaped like `like` (checked).

    prefix: 'module.' (DataParallel) or ''; None detects it from the keys.
    """
    if prefix is None:
        prefix = "module." if any(k.startswith("module.") for k in state_dict) else ""
    m = _torch_map(like, prefix)
    src = {k: v for k, v in state_dict.items() if k.rsplit(".", 1)[-1] not in TORCH_IGNORED}
    out, missing, mismatched, used = {}, [], [], set()
    for path, leaf in flatten(like).items():
        key, how = m[path]
        if key not in src:
            missing.append(key)
            continue
        used.add(key)
        x = _from_torch(src[key], how)
        if x.shape != _expected_shape(leaf):
            mismatched.append(
                (
                    key,
                    tuple(np.shape(src[key])),
                    tuple(_to_torch(np.zeros(_expected_shape(leaf), np.int8), how).shape),
                )
            )
            continue
        out[path] = x
    unexpected = [k for k in src if k not in used]
    _check(what, missing, unexpected, mismatched)
    return unflatten(out)


def torch_ema_state_dict(model_sd: dict, ema_sd: dict) -> dict:
    """The EMA weights of a PyTorch-port checkpoint as a state_dict like `model_sd`.

    The port's ExponentialMovingAverage stores `shadow_params`, a list over the model's
    *trainable* parameters in registration order; the frozen Fourier-feature `W` is not in it and
    is taken from the model.
    """
    shadow = list(ema_sd["shadow_params"])
    keys = torch_parameter_keys(model_sd)
    if len(shadow) != len(keys):
        keys = [k for k in keys if not _is_fourier_w(k, model_sd)]
    if len(shadow) != len(keys):
        raise ValueError(
            f"PyTorch checkpoint: ema.shadow_params has {len(shadow)} tensors but the "
            f"model has {len(keys)} trainable parameters; the checkpoint is damaged"
        )
    out = dict(model_sd)
    for k, v in zip(keys, shadow, strict=True):
        if tuple(np.shape(v)) != tuple(np.shape(model_sd[k])):
            raise ValueError(
                f"PyTorch checkpoint: ema tensor for {k} has shape {np.shape(v)}, the "
                f"model's has {np.shape(model_sd[k])}"
            )
        out[k] = v
    return out


def _is_fourier_w(key: str, sd: dict) -> bool:
    return key.endswith(".W") and np.ndim(sd[key]) == 1
