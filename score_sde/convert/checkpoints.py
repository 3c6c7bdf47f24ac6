r"""Convert a published checkpoint into this framework's checkpoint format.

    python -m score_sde.convert --config configs/ve/cifar10_ncsnpp_continuous.py \
        --source exp/ve/cifar10_ncsnpp_continuous/checkpoint_24 --workdir runs/ve_cifar10_pub
    python launch.py --config configs/ve/cifar10_ncsnpp_continuous.py \
        --workdir runs/ve_cifar10_pub --mode sample

Sources: the original JAX checkpoints (flax msgpack `checkpoint_<n>`: `optimizer.target` params and
`params_ema`) and the PyTorch port's `.pth` (`model` / `ema` state_dicts; read without torch,
score_sde.store.torch_format). The result is a snapshot at the source's step in <workdir>/checkpoints/
with params, EMA params and a fresh optimizer state; sample and eval modes use the EMA params.
Supported networks: ncsnpp (NCSN++ / DDPM++) and ddpm; the config must be the checkpoint's.

Released transformers (PyTorch files, score_sde.convert.transformers): U-ViT's pixel-space models
(--config vp/cifar10_uvit_s2, vp/imagenet64_uvit_m4, vp/imagenet64_uvit_l4) and DiT-XL/2 / SiT-XL/2
at 256 px (--config vp/imagenet256_dit_xl2, flow/imagenet256_sit_xl2). DiT and SiT are latent
models: they convert and sample 32x32x4 latents of Stable Diffusion's VAE (x 0.18215), which
sample mode writes as `samples_model` in its .npz; decoding them to images is not part of this
framework.

An existing snapshot at that step is kept (the command fails) unless `--overwrite` is given; a
work directory with a newer checkpoint is refused (sample and eval modes would load that one).
Bad input: one `error:` line naming the flag or file and the fix, exit status 2, and nothing in
the work directory written.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys

import numpy as np

from score_sde.convert import layout, transformers

EXPECTED = (
    "a checkpoint file: the original score_sde's flax msgpack checkpoint_<n> (in "
    "exp/<run>/checkpoints/), a PyTorch-port .pth (score_sde_pytorch's checkpoint_<n>.pth), or "
    "U-ViT's / DiT's / SiT's released .pth / .pt"
)
USAGE = (
    "usage: python -m score_sde.convert --config FILE --source PATH --workdir DIR "
    "[--format auto|jax|torch] [--overwrite] [--config.<section>.<field>=VALUE ...]"
)


def check_source(path: str) -> None:
    """A ValueError naming `path` and what is expected unless it is a readable file."""
    if not str(path).strip():
        raise ValueError(f"--source is empty; pass {EXPECTED}")
    if os.path.isdir(path):
        found = sorted(
            (f for f in os.listdir(path) if re.fullmatch(r"checkpoint_\d+(\.pth)?|.+\.pth?", f)),
            key=lambda f: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", f)],
        )
        hint = (
            f"; it holds {', '.join(found[-5:])}: e.g. --source {os.path.join(path, found[-1])}"
            if found
            else ""
        )
        raise ValueError(f"--source {path} is a directory; pass {EXPECTED}{hint}")
    if not os.path.exists(path):
        raise ValueError(f"--source {path}: no such file; pass {EXPECTED}")
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise ValueError(f"--source {path} is not a readable file; pass {EXPECTED}")


def read_jax_checkpoint(path: str) -> tuple[dict, dict, int]:
    """Flax msgpack state dict -> (params, ema params, step), params in the original layout."""
    from flax import serialization

    with open(path, "rb") as f:
        data = f.read()
    try:
        state = serialization.msgpack_restore(data)
    except Exception as e:  # msgpack raises several types on foreign bytes
        cause = " ".join(f"{type(e).__name__}: {e}".split())[:200]
        raise ValueError(
            f"--source {path} is not a flax msgpack checkpoint ({cause}); pass {EXPECTED}, "
            "with --format=torch for a .pth of another name"
        ) from None
    optimizer = state.get("optimizer") if isinstance(state, dict) else None
    if (
        not isinstance(optimizer, dict)
        or not isinstance(optimizer.get("target"), dict)
        or not isinstance(state.get("params_ema"), dict)
    ):
        keys = sorted(state)[:8] if isinstance(state, dict) else type(state).__name__
        raise ValueError(
            f"--source {path}: not an original score_sde checkpoint (expected 'optimizer' with "
            f"'target', and 'params_ema' at the top level, found {keys}); pass {EXPECTED}"
        )
    params = optimizer["target"]
    params = params.get("params", params)  # tolerate a {'params': ...} wrapper
    ema = state["params_ema"]
    ema = ema.get("params", ema)
    return params, ema, int(np.asarray(state.get("step", 0)))


def read_torch_checkpoint(path: str) -> tuple[dict, dict, int]:
    """PyTorch-port `.pth` -> (model state_dict, EMA state_dict, step) as numpy arrays; read
    without torch (score_sde.store.torch_format)."""
    from score_sde.store import torch_format

    try:
        ckpt = torch_format.load(path)
    except (ValueError, OSError) as e:
        cause = " ".join(str(e).split())[:200]
        raise ValueError(
            f"--source {path} is not a PyTorch checkpoint ({cause}); pass {EXPECTED}"
        ) from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        keys = sorted(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(
            f"--source {path}: not a score_sde_pytorch checkpoint (no 'model' state_dict; found "
            f"{keys}); pass {EXPECTED}"
        )

    def to_np(x):
        return np.asarray(x)

    model = {k: to_np(v) for k, v in ckpt["model"].items()}
    ema = model
    if "ema" in ckpt:
        e = dict(ckpt["ema"])
        if "shadow_params" not in e:
            raise ValueError(
                f"--source {path}: its 'ema' has no shadow_params (found {sorted(e)[:8]}); pass "
                f"{EXPECTED}"
            )
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

    if fmt not in ("auto", "jax", "torch"):
        raise ValueError(f"--format ({fmt!r}) must be 'auto', 'jax' or 'torch'")
    check_source(source)
    like = nnx.to_pure_dict(models.abstract_params(config.model, config.data))
    fmt = detect_format(source) if fmt == "auto" else fmt
    if config.model.name in transformers.FAMILIES:
        if fmt == "jax":
            raise ValueError(
                f"--format=jax: config.model.name {config.model.name!r} converts from the released "
                f"PyTorch files only; pass {transformers.EXPECTED}"
            )
        return transformers.convert_params(config, source, like)
    if fmt == "jax":
        p, e, step = read_jax_checkpoint(source)
        return (
            layout.from_jax_layout(p, config, like, f"{source} (optimizer.target)"),
            layout.from_jax_layout(e, config, like, f"{source} (params_ema)"),
            step,
        )
    layout.family(config)
    p, e, step = read_torch_checkpoint(source)
    return (
        layout.from_torch_layout(p, like, what=f"{source} (model)"),
        layout.from_torch_layout(e, like, what=f"{source} (ema)"),
        step,
    )


def _existing_steps(workdir: str) -> tuple[list[int], int | None]:
    """(snapshot steps, newest step of any kind) already in `workdir`; writes nothing."""
    from score_sde.store import checkpoint

    if not os.path.isdir(workdir):
        return [], None
    with checkpoint.Checkpoints(workdir, read_only=True) as ckpts:
        return ckpts.snapshot_steps(), ckpts.latest_step()


def _check_target(workdir: str, step: int, source: str, overwrite: bool) -> bool:
    """Whether the save replaces snapshot `step`; a ValueError (before anything is written)
    when it exists without `overwrite`, or when a newer checkpoint would shadow it."""
    from score_sde.store import checkpoint

    snapshots, latest = _existing_steps(workdir)
    path = os.path.join(workdir, checkpoint.SNAPSHOT_DIR, str(step))
    exists = step in snapshots or os.path.lexists(path)  # an incomplete one blocks orbax too
    if exists and not overwrite:
        raise ValueError(
            f"--workdir {workdir} already has a checkpoint at step {step} ({path}); pass "
            f"--overwrite to replace it with {source}, or pass another --workdir"
        )
    if exists and not os.path.lexists(path):
        raise ValueError(
            f"cannot replace checkpoint {step} of {workdir}: it is not at {path}; remove it by "
            "hand or pass a fresh --workdir"
        )
    if latest is not None and latest > step:
        raise ValueError(
            f"--workdir {workdir} has a newer checkpoint (step {latest}) than {source} (step "
            f"{step}), and sample and eval modes load the newest; pass a fresh --workdir"
        )
    return exists


def _save(workdir: str, step: int, state, replace: bool) -> None:
    """Saves snapshot `step`. With `replace`, the old one is moved aside first (orbax does not
    write over a step) to <workdir>/.replaced_checkpoint_<step>_<pid>, put back if the save
    fails and removed once it succeeded."""
    from score_sde.store import checkpoint

    old = os.path.join(workdir, checkpoint.SNAPSHOT_DIR, str(step))
    aside = os.path.join(workdir, f".replaced_checkpoint_{step}_{os.getpid()}")
    if replace:
        os.rename(old, aside)
    try:
        with checkpoint.Checkpoints(workdir) as ckpts:
            ckpts.save(step, state, snapshot=True)
    except BaseException:
        if replace and not os.path.lexists(old):
            os.rename(aside, old)
        raise
    if replace:
        if os.path.isdir(aside) and not os.path.islink(aside):
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.remove(aside)
    if step not in _existing_steps(workdir)[0]:
        raise ValueError(f"checkpoint {old} was not written; rerun, or pass a fresh --workdir")


def convert(config, source: str, workdir: str, fmt: str = "auto", *, overwrite: bool = False):
    """Writes `source` as a snapshot in `workdir` that launch.py's sample/eval modes load.

    Returns the step it was saved at. Refuses (ValueError, nothing written) a step the work
    directory already has unless `overwrite`, and a work directory with a newer checkpoint.
    """
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from score_sde import config as config_lib
    from score_sde import models
    from score_sde.run import experiment, train
    from score_sde.store import workdir as wd

    cfg = config if isinstance(config, config_lib.Config) else config_lib.from_config(config)
    params, ema, step = convert_params(cfg, source, fmt)
    if not str(workdir).strip():
        raise ValueError("--workdir is empty; pass a directory, e.g. --workdir=./runs/converted")
    replace = _check_target(os.path.abspath(os.path.expanduser(workdir)), step, source, overwrite)
    exp = experiment.build(cfg)

    def as_state(pure):
        state = models.abstract_params(cfg.model, cfg.data)
        nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, pure))
        return state

    p, e = as_state(params), as_state(ema)
    state = train.init_state(p, exp.tx, jax.random.split(exp.key(experiment.KEY_INIT))[1])
    state = state._replace(step=jnp.asarray(step, jnp.int32), ema_params=e)
    workdir = wd.prepare(workdir)
    _save(workdir, step, state, replace)
    wd.write_json(os.path.join(workdir, "config.json"), cfg.to_dict())
    return step


def main(argv=None) -> None:
    """`python -m score_sde.convert --config FILE [--config.<section>.<field>=V] --source PATH
    --workdir DIR [--format auto|jax|torch] [--overwrite]`; bad input: one `error:` line, exit
    status 2."""
    from absl import app, flags, logging

    from score_sde import config as config_lib
    from score_sde.config import fail

    argv = sys.argv if argv is None else argv
    path, overrides, rest = config_lib.split_argv(argv[1:], "")
    flags.DEFINE_string(
        "source", None, "Original checkpoint: flax msgpack, or .pth / .pt (incl. U-ViT, DiT, SiT)."
    )
    flags.DEFINE_string("workdir", None, "Work directory to write the converted checkpoint to.")
    flags.DEFINE_enum("format", "auto", ["auto", "jax", "torch"], "Source format.")
    flags.DEFINE_bool(
        "overwrite", False, "Replace a checkpoint the work directory has at the step."
    )
    FLAGS = flags.FLAGS
    names = ["source", "workdir", "format", "overwrite"]
    config_lib.answer_help(rest, f"{USAGE}\n\n{__doc__}", FLAGS, names)

    def parse(args):
        try:
            return FLAGS(args)
        except flags.Error as e:
            fail(f"{e}; {USAGE}")

    def run(args):
        logging.set_verbosity(logging.WARNING)  # orbax logs every file it touches at INFO
        if len(args) > 1:
            fail(f"unexpected arguments {args[1:]}; flags look like --name=value; {USAGE}")
        missing = [] if path else ["--config"]
        missing += [f"--{n}" for n in ("source", "workdir") if FLAGS[n].value is None]
        if missing:
            fail(f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required; {USAGE}")
        try:
            cfg = config_lib.load(path, overrides)
            step = convert(
                cfg, FLAGS.source, FLAGS.workdir, FLAGS.format, overwrite=FLAGS.overwrite
            )
        except (ValueError, FloatingPointError, OSError) as e:  # FloatingPointError: NaN weights
            fail(str(e))
        command = ["python", "launch.py", "--config", path]
        command += [f"--config.{k}={v}" for k, v in overrides.items()]
        command += ["--workdir", FLAGS.workdir, "--mode", "sample"]
        print(
            f"converted {FLAGS.source} (step {step}) -> "
            f"{os.path.join(FLAGS.workdir, 'checkpoints', str(step))}; sample it with: "
            f"{shlex.join(command)}"
        )

    app.run(run, [argv[0], *rest], flags_parser=parse)


if __name__ == "__main__":
    main()
