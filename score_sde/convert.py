"""Convert a published checkpoint into this framework's checkpoint format.

    python -m score_sde.convert --config configs/ve/cifar10_ncsnpp_continuous.py \
        --source exp/ve/cifar10_ncsnpp_continuous/checkpoint_24 --workdir runs/ve_cifar10_pub
    python launch.py --config configs/ve/cifar10_ncsnpp_continuous.py \
        --workdir runs/ve_cifar10_pub --mode sample

Sources: the original JAX checkpoints (flax msgpack `checkpoint_<n>`: `optimizer.target` params and
`params_ema`) and the PyTorch port's `.pth` (`model` / `ema` state_dicts; torch is imported only
when such a file is read). The result is a snapshot at the source's step in <workdir>/checkpoints/
with params, EMA params and a fresh optimizer state; sample and eval modes use the EMA params.
Supported networks: ncsnpp (NCSN++ / DDPM++) and ddpm; the config must be the checkpoint's.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from score_sde import convert_layout as layout


def read_jax_checkpoint(path: str) -> tuple[dict, dict, int]:
    """Flax msgpack state dict -> (params, ema params, step), params in the original layout."""
    from flax import serialization

    with open(path, "rb") as f:
        state = serialization.msgpack_restore(f.read())
    if not isinstance(state, dict) or "optimizer" not in state or "params_ema" not in state:
        keys = list(state) if isinstance(state, dict) else type(state).__name__
        raise ValueError(
            f"{path}: not an original score_sde checkpoint (expected 'optimizer' and "
            f"'params_ema' at the top level, found {keys})"
        )
    params = state["optimizer"]["target"]
    params = params.get("params", params)  # tolerate a {'params': ...} wrapper
    ema = state["params_ema"]
    ema = ema.get("params", ema)
    return params, ema, int(np.asarray(state.get("step", 0)))


def read_torch_checkpoint(path: str) -> tuple[dict, dict, int]:
    """PyTorch-port `.pth` -> (model state_dict, EMA state_dict, step) as numpy arrays."""
    try:
        import torch
    except ImportError:
        raise ValueError(
            f"reading {path} needs PyTorch: pip install torch (CPU build is enough), "
            "or convert it where torch is installed"
        ) from None
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if "model" not in ckpt:
        raise ValueError(
            f"{path}: not a score_sde_pytorch checkpoint (no 'model'; keys {list(ckpt)})"
        )

    def to_np(x):
        return x.detach().cpu().numpy() if hasattr(x, "detach") else x

    model = {k: to_np(v) for k, v in ckpt["model"].items()}
    ema = model
    if "ema" in ckpt:
        e = dict(ckpt["ema"])
        e["shadow_params"] = [to_np(v) for v in e["shadow_params"]]
        ema = layout.torch_ema_state_dict(model, e)
    return model, ema, int(ckpt.get("step", 0))


def detect_format(path: str) -> str:
    """'torch' for a zip (.pth/.pt) file or a .pth/.pt name, else 'jax' (msgpack)."""
    with open(path, "rb") as f:
        magic = f.read(2)
    return "torch" if magic == b"PK" or path.endswith((".pth", ".pt")) else "jax"


def convert_params(config, source: str, fmt: str = "auto"):
    """(params, ema params, step) of `source` as pure dicts in our layout, checked against the
    typed config's network."""
    from flax import nnx

    from score_sde import models

    like = nnx.to_pure_dict(models.abstract_params(config.model, config.data))
    fmt = detect_format(source) if fmt == "auto" else fmt
    if fmt == "jax":
        p, e, step = read_jax_checkpoint(source)
        return (
            layout.from_jax_layout(p, config, like, f"{source} (optimizer.target)"),
            layout.from_jax_layout(e, config, like, f"{source} (params_ema)"),
            step,
        )
    if fmt == "torch":
        layout.family(config)
        p, e, step = read_torch_checkpoint(source)
        return (
            layout.from_torch_layout(p, like, what=f"{source} (model)"),
            layout.from_torch_layout(e, like, what=f"{source} (ema)"),
            step,
        )
    raise ValueError(f"--format ({fmt!r}) must be 'auto', 'jax' or 'torch'")


def convert(config, source: str, workdir: str, fmt: str = "auto") -> int:
    """Writes `source` as a snapshot in `workdir` that launch.py's sample/eval modes load.

    Returns the step it was saved at.
    """
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from score_sde import checkpoint, experiment, models, train
    from score_sde import config as config_lib
    from score_sde import workdir as wd

    cfg = config if isinstance(config, config_lib.Config) else config_lib.from_config(config)
    params, ema, step = convert_params(cfg, source, fmt)
    exp = experiment.build(cfg)

    def as_state(pure):
        state = models.abstract_params(cfg.model, cfg.data)
        nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, pure))
        return state

    p, e = as_state(params), as_state(ema)
    state = train.init_state(p, exp.tx, jax.random.split(exp.key(experiment.KEY_INIT))[1])
    state = state._replace(step=jnp.asarray(step, jnp.int32), ema_params=e)
    workdir = wd.prepare(workdir)
    with checkpoint.Checkpoints(workdir) as ckpts:
        ckpts.save(step, state, snapshot=True)
    wd.write_json(os.path.join(workdir, "config.json"), cfg.to_dict())
    return step


def main(argv=None) -> None:
    """`python -m score_sde.convert --config FILE [--config.<section>.<field>=V] --source PATH
    --workdir DIR [--format auto|jax|torch]`; bad input: one `error:` line, exit status 2."""
    from absl import app, flags

    from score_sde import config as config_lib

    argv = sys.argv if argv is None else argv
    path, overrides, rest = config_lib.split_argv(argv[1:], "")
    flags.DEFINE_string("source", None, "Original checkpoint: flax msgpack or PyTorch .pth.")
    flags.DEFINE_string("workdir", None, "Work directory to write the converted checkpoint to.")
    flags.DEFINE_enum("format", "auto", ["auto", "jax", "torch"], "Source format.")
    FLAGS = flags.FLAGS

    def fail(message: str):
        print("error: " + " ".join(str(message).split()), file=sys.stderr)
        sys.exit(2)

    def run(args):
        if len(args) > 1:
            fail(f"unexpected arguments {args[1:]}; flags look like --name=value")
        missing = [f"--{n}" for n in ("source", "workdir") if FLAGS[n].value is None]
        if not path or missing:
            fail(f"{', '.join(missing or ['--config'])} is required; see --help")
        try:
            cfg = config_lib.load(path, overrides)
            step = convert(cfg, FLAGS.source, FLAGS.workdir, FLAGS.format)
        except (ValueError, FileNotFoundError) as e:
            fail(str(e))
        print(
            f"converted {FLAGS.source} -> {FLAGS.workdir}/checkpoints/{step}; sample with: "
            f"python launch.py --config {path} --workdir {FLAGS.workdir} --mode sample"
        )

    app.run(run, [argv[0], *rest])


if __name__ == "__main__":
    main()
