"""`python -m score_sde.phema`: EMAs of any length, reconstructed after training from a run's
post-hoc EMA snapshots (config.training.phema_stds; score_sde.phema has the method).

    python -m score_sde.phema --workdir W --std 0.08 [--std 0.12 ...] --out D [--step N]

For each --std, a work directory D/std-<std>/ with W's config.json and one checkpoint at step N
(default: the newest snapshot's) whose parameters and EMA parameters are the reconstruction
(sum_k x_k snapshot_k over W/phema/<step <= N>/, the least-squares fit of the target profile; a
fresh optimizer state), and phema.json saying how it was made. `score_sde.load`, sample and eval
mode load it like any run (with W's config). Bad input: one `error:` line, exit status 2,
nothing written.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from score_sde import parallel, phema
from score_sde.config import Config, fail, from_config
from score_sde.run import experiment, train
from score_sde.store import fs, phema_files
from score_sde.store import workdir as wd
from score_sde.store.checkpoint import Checkpoints

USAGE = "usage: python -m score_sde.phema --workdir=DIR --std=S [--std=S ...] --out=DIR [--step=N]"
INFO_FILE = "phema.json"


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a reconstruction reads and writes, checked before anything is written."""

    cfg: Config
    snapshots: list[phema_files.Snapshot]  # those used: step <= `step`
    step: int
    stds: tuple[float, ...]
    outs: tuple[str, ...]  # one work directory per std
    weights: np.ndarray  # [K, M]: snapshot k's weight in target m
    errors: np.ndarray  # [M]: relative L2 error of the fitted profile


def out_dir(out: str, std: float) -> str:
    return os.path.join(out, "std-" + repr(float(std)))


def plan(workdir: str, stds: Sequence[float], out: str, step: int | None = None) -> Plan:
    """The reconstruction of `stds` at `step` from `workdir`'s snapshots into `out`; one
    ValueError naming the flag and the fix when something does not fit."""
    if not stds:
        raise ValueError("--std is required: the relative EMA width(s) to reconstruct, e.g. 0.08")
    bad = [s for s in stds if not 0.0 < s < phema.MAX_STD]
    if bad:
        raise ValueError(
            f"--std {bad[0]} is not a relative EMA width: each must lie in (0, "
            f"{phema.MAX_STD:.4f}) (EDM2 trains with 0.05 and 0.1 and sweeps about 0.01-0.25)"
        )
    config_json = fs.path(workdir) / "config.json"
    if not config_json.is_file():
        raise ValueError(
            f"--workdir {workdir} has no config.json: pass the work directory of a run trained "
            "with --config.training.phema_stds"
        )
    cfg = from_config(json.loads(config_json.read_text()))
    found = phema_files.listing(workdir)
    if not found:
        raise ValueError(
            f"--workdir {workdir} has no post-hoc EMA snapshots ({phema_files.DIR}/): train with "
            "--config.training.phema_stds='(0.05,0.1)' to store them"
        )
    steps = sorted({s.step for s in found})
    step = steps[-1] if step is None else step
    if step not in steps:
        raise ValueError(f"--step {step} has no snapshots in {workdir}; choose one of {steps}")
    used = [s for s in found if s.step <= step]
    outs = tuple(out_dir(out, s) for s in stds)
    for d in outs:
        p = fs.path(d)
        if p.exists() and (not p.is_dir() or any(p.iterdir())):
            raise ValueError(
                f"--out {out}: {d} exists and is not empty; remove it or pass another --out"
            )
    t, s = [u.step for u in used], [u.std for u in used]
    weights = phema.coefficients(t, s, [step] * len(stds), list(stds))
    errors = phema.fit_error(t, s, [step] * len(stds), list(stds), weights)
    return Plan(cfg, used, step, tuple(float(v) for v in stds), outs, weights, errors)


def reconstruct(p: Plan) -> list[str]:
    """Writes one work directory per std of the plan; returns their paths."""
    exp = experiment.build(p.cfg, parallel.make_mesh(1))
    like = exp.state_like()
    rep = parallel.replicated(exp.mesh)
    key = jax.random.split(exp.key(experiment.KEY_INIT))[1]  # the train key of a new state
    written = []
    for m, out in enumerate(p.outs):
        trees = (phema_files.read(s, like.ema_params) for s in p.snapshots)
        ema = jax.device_put(jax.tree.map(jnp.asarray, phema.combine(p.weights[:, m], trees)), rep)
        state: Any = train.init_state(ema, exp.tx, key)
        state = state._replace(step=jax.device_put(jnp.asarray(p.step, jnp.int32), rep))
        out = wd.prepare(out)
        with Checkpoints(out) as ckpts:
            ckpts.save(p.step, state, snapshot=True)
        wd.write_json(os.path.join(out, "config.json"), p.cfg.to_dict())
        wd.write_json(os.path.join(out, INFO_FILE), _info(p, m))
        written.append(out)
    return written


def _info(p: Plan, m: int) -> dict:
    return {
        "std": p.stds[m],
        "gamma": float(phema.std_to_gamma(p.stds[m])),
        "step": p.step,
        "profile_error": float(p.errors[m]),
        "snapshots": [
            {"step": s.step, "std": s.std, "weight": float(w), "path": s.path}
            for s, w in zip(p.snapshots, p.weights[:, m], strict=True)
        ],
    }


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit status 2
        fail(f"{message}; {USAGE}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = _Parser(prog="python -m score_sde.phema", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="a run trained with phema_stds")
    parser.add_argument(
        "--std", type=float, action="append", required=True, metavar="S",
        help="relative EMA width to reconstruct, in (0, 0.2887); repeat for a sweep",
    )  # fmt: skip
    parser.add_argument("--out", required=True, help="writes one work directory per std here")
    parser.add_argument("--step", type=int, default=None, help="default: the newest snapshot")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        p = plan(args.workdir, args.std, args.out, args.step)
        written = reconstruct(p)
    except (ValueError, FloatingPointError) as e:
        fail(str(e))
    except OSError as e:
        if fs.storage_failure(e) is None:
            raise
        fail(f"cannot write --out {args.out} ({fs.storage_failure(e)}); make room and rerun")
    for std, out, err in zip(p.stds, written, p.errors, strict=True):
        print(
            f"std {std:g} at step {p.step} from {len(p.snapshots)} snapshots (profile fit error "
            f"{err:.2%}) -> {out}"
        )
    print(
        "load one with score_sde.load(DIR), or sample it with the training command and "
        "--workdir=DIR --mode=sample"
    )
