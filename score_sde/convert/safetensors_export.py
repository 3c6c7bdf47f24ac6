"""One file per trained model: a run's EMA parameters and config as `.safetensors`.

    score-sde export --workdir runs/digits --out digits.safetensors    # export(workdir, out)
    model = score_sde.load("digits.safetensors")                        # restore(path)

Tensors: the leaves of the EMA parameter tree, each named by its path joined with '/'
(`hidden/0/kernel`; nnx's `.value` box left out), in its own dtype (bf16 included) and shape.
Metadata (str -> str): `format` (FORMAT), `step`, and `config`, the run's config as JSON
(`cfg.to_dict()`, what config.json holds). Loading builds the config's network and rebuilds its
parameter tree from the file: the names, shapes and dtypes must be exactly the network's, and the
values are the checkpoint's bit for bit.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import ml_dtypes  # noqa: F401  # registers bfloat16 with numpy, which safetensors' reader needs
import numpy as np

FORMAT = "score_sde.ema_params/1"
SUFFIX = ".safetensors"
MADE_BY = "score-sde export --workdir=WORKDIR --out=FILE.safetensors"


def tensor_name(path: tuple) -> str:
    """'/'-joined keys of a tree path: dict keys, sequence indices and attribute names, without
    the `value` attribute of nnx's Variable box (a Param's path ends in `.value`)."""
    parts = []
    for k in path:
        if isinstance(k, jax.tree_util.DictKey):
            parts.append(str(k.key))
        elif isinstance(k, jax.tree_util.SequenceKey):
            parts.append(str(k.idx))
        elif isinstance(k, jax.tree_util.GetAttrKey):
            parts.append(k.name)
        else:  # FlattenedIndexKey and other custom nodes
            parts.append(str(getattr(k, "key", k)))
    if len(parts) > 1 and isinstance(path[-1], jax.tree_util.GetAttrKey) and parts[-1] == "value":
        parts.pop()
    return "/".join(parts)


def flatten(tree: Any) -> dict[str, Any]:
    """{tensor_name(path): leaf} of a parameter tree (its leaves in tree order)."""
    out: dict[str, Any] = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        name = tensor_name(path)
        if name in out:
            raise ValueError(f"two parameters share the tensor name {name!r}: {path}")
        out[name] = leaf
    return out


def _listed(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def unflatten(like: Any, tensors: Mapping[str, np.ndarray], where: str) -> Any:
    """The tree of `like` (abstract or concrete parameters) with the arrays `tensors` by name;
    one ValueError naming `where` and every missing, unexpected or mismatching name."""
    expected = flatten(like)
    missing = [n for n in expected if n not in tensors]
    unexpected = [n for n in tensors if n not in expected]
    wrong = [
        f"{n} (file {tensors[n].dtype} {list(tensors[n].shape)}, network "
        f"{np.dtype(x.dtype)} {list(x.shape)})"
        for n, x in expected.items()
        if n in tensors
        and (tensors[n].shape != tuple(x.shape) or tensors[n].dtype != np.dtype(x.dtype))
    ]
    if missing or unexpected or wrong:
        problems = [
            f"{what} {_listed(names)}"
            for what, names in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("mismatching", wrong),
            )
            if names
        ]
        raise ValueError(
            f"{where} does not hold the parameters of its config's network: "
            f"{'; '.join(problems)}; export the run again with {MADE_BY}"
        )
    treedef = jax.tree.structure(like)
    return jax.tree.unflatten(treedef, [tensors[n] for n in expected])


def check_out(out: str, overwrite: bool = False) -> None:
    """A ValueError naming --out and the fix unless `out` is a new (or, with `overwrite`, an
    existing) file path ending in .safetensors."""
    from score_sde.store import fs

    p = fs.path(out)
    if p.is_dir():
        raise ValueError(
            f"--out {out} is a directory; pass a file path ending in {SUFFIX}, e.g. --out "
            f"{os.path.join(str(out), 'model' + SUFFIX)}"
        )
    if not str(out).endswith(SUFFIX):
        raise ValueError(
            f"--out {out} must end in {SUFFIX} (score_sde.load recognizes an export by it); "
            f"e.g. --out {os.path.splitext(str(out))[0] or 'model'}{SUFFIX}"
        )
    if p.exists() and not overwrite:
        raise ValueError(f"--out {out} exists; pass --overwrite to replace it, or another --out")


def export(workdir: str, out: str, step: int | None = None, *, overwrite: bool = False) -> int:
    """Writes the EMA parameters of checkpoint `step` (default: the newest intact one) of
    `workdir` and its config to the .safetensors file `out` (atomically); returns the step.
    Bad input: one ValueError naming the flag or path and the fix, nothing written."""
    import safetensors.numpy

    from score_sde import parallel
    from score_sde.run import experiment
    from score_sde.store import fs

    check_out(out, overwrite)
    for problem, bad in (
        ("no such directory", not fs.path(workdir).is_dir()),
        ("no config.json there", not (fs.path(workdir) / "config.json").is_file()),
    ):
        if bad:
            raise ValueError(
                f"--workdir {workdir}: {problem}; pass the work directory of a trained run "
                "(--mode=train) or of a converted checkpoint (python -m score_sde.convert)"
            )
    exp, params, step = experiment.restore(workdir, step)
    tensors = {n: np.ascontiguousarray(x) for n, x in flatten(parallel.to_host(params)).items()}
    metadata = {
        "format": FORMAT,
        "step": str(step),
        "config": json.dumps(exp.cfg.to_dict(), sort_keys=True),
    }
    if parallel.is_main_process():
        fs.write_bytes(out, safetensors.numpy.save(tensors, metadata=metadata))
    return step


@contextlib.contextmanager
def _local_copy(path: str) -> Iterator[str]:
    """`path` itself, or a temporary local copy of a remote file (safetensors opens local files)."""
    from score_sde.store import fs

    if not fs.is_remote(path):
        yield path
        return
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, "model" + SUFFIX)
        with open(local, "wb") as f:
            f.write(fs.path(path).read_bytes())
        yield local


def read(path: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """({tensor name: array}, metadata) of an export; one ValueError naming `path` and the fix
    for a missing file, another format, or a file of another program."""
    from safetensors import safe_open

    from score_sde.store import fs

    if not fs.path(path).is_file():
        raise ValueError(f"{path}: no such file; write it with {MADE_BY}")
    try:
        with _local_copy(path) as local, safe_open(local, framework="np") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises several types on foreign bytes
        cause = " ".join(f"{type(e).__name__}: {e}".split())[:200]
        raise ValueError(
            f"{path} is not a readable .safetensors file ({cause}); write it with {MADE_BY}"
        ) from None
    if metadata.get("format") != FORMAT or not {"step", "config"} <= metadata.keys():
        raise ValueError(
            f"{path} is a .safetensors file but not a score_sde export (metadata format "
            f"{metadata.get('format')!r}, expected {FORMAT!r} with step and config); write one "
            f"with {MADE_BY}"
        )
    return tensors, metadata


def restore(
    path: str, step: int | None = None, overrides: Mapping[str, str] | None = None
) -> tuple[Any, Any, int]:
    """(experiment, EMA params, step) of the export `path`, as run.experiment.restore gives them
    for a work directory: the file's config (with `overrides` as on the command line) and its
    parameters, replicated over the mesh. `step`, if given, must be the file's."""
    from score_sde import parallel
    from score_sde.config import apply_overrides, from_config
    from score_sde.run import experiment

    tensors, metadata = read(path)
    saved = int(metadata["step"])
    if step is not None and step != saved:
        raise ValueError(
            f"{path} holds step {saved} only, not step {step}; pass step=None, or export step "
            f"{step} with {MADE_BY} --step={step}"
        )
    cfg = from_config(apply_overrides(json.loads(metadata["config"]), overrides or {}))
    exp = experiment.build(cfg)
    params = unflatten(exp.state_like().ema_params, tensors, path)
    return exp, parallel.replicate(params, exp.mesh), saved
