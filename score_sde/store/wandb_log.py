"""Weights & Biases as one more sink of the metrics log (config.logging.wandb), process 0 only.

    wandb_log.require(project)                  # before anything trains: the package is there
    run = wandb_log.start(project=..., name=..., mode=..., entity=..., workdir=..., run_id=...,
                          config=cfg.to_dict())
    run.log(step, {"training_loss": 0.9}); run.image(step, "samples", grid); run.finish()

The W&B run's id is the work directory's run id (score_sde.run.identity, kept in run.json), so a
resumed run continues the same W&B run (resume="allow"). Offline, every start writes its own
`<workdir>/wandb/offline-run-<time>-<run id>/`; `wandb sync` uploads them into that one run.
wandb is imported only here, and only when a project is set. W&B keeps its files on a local disk:
for a gs:// work directory they go to $WANDB_DIR or a local temporary directory (said in one line).
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Literal, cast

import numpy as np

from score_sde.store import fs

INSTALL = 'pip install -e ".[wandb]"'


def require(project: str) -> None:
    """Raises one ValueError when a W&B project is set but the wandb package is missing."""
    if not project:
        return
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise ValueError(
            f"config.logging.wandb ({project!r}) logs to Weights & Biases, but the wandb package "
            f"is not installed: {INSTALL} (or pip install wandb), or remove "
            "--config.logging.wandb"
        ) from None


def local_dir(workdir: str, run_id: str) -> tuple[str, str | None]:
    """(the directory W&B writes its `wandb/` folder into, a note when it is not `workdir`)."""
    if not fs.is_remote(workdir):
        return workdir, None
    where = os.environ.get("WANDB_DIR") or os.path.join(
        tempfile.gettempdir(), "score_sde-wandb", run_id
    )
    os.makedirs(where, exist_ok=True)
    return where, f"W&B: {workdir} is not a local disk; its W&B files go to {where}/wandb"


class WandbRun:
    """An open W&B run: scalars and uint8 images at a step, then `finish`."""

    def __init__(self, run: Any):
        self._run = run

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self._run.log(metrics, step=int(step))

    def image(self, step: int, tag: str, image: np.ndarray) -> None:
        import wandb

        self._run.log({tag: wandb.Image(image)}, step=int(step))

    def finish(self, *, failed: bool = False) -> None:
        self._run.finish(exit_code=1 if failed else 0)


def start(
    *,
    project: str,
    name: str,
    mode: str,
    entity: str,
    workdir: str,
    run_id: str,
    config: dict,
) -> tuple[WandbRun, str | None]:
    """(the W&B run `run_id` of `project`, started or resumed; a note for the log, or None).
    name '' = the work directory's basename; entity '' = W&B's default."""
    require(project)
    import wandb

    where, note = local_dir(workdir, run_id)
    try:
        run = wandb.init(
            project=project,
            entity=entity or None,
            name=name or os.path.basename(workdir.rstrip("/")) or None,
            mode=cast(Literal["online", "offline"], mode),  # checked by config.logging
            dir=where,
            id=run_id,
            resume="allow",
            config=config,
        )
    except wandb.errors.Error as e:
        raise ValueError(
            f"Weights & Biases could not start run {run_id} of config.logging.wandb ({project!r}) "
            f"in mode {mode!r}: {str(e).rstrip('.')}. Check the login (wandb login, or "
            "WANDB_API_KEY) and the network, or pass --config.logging.wandb_mode=offline and "
            "upload later with wandb sync"
        ) from None
    return WandbRun(run), note
