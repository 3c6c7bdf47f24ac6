"""Plot mode: a run's loss curve and its newest sample picture as PNG files (matplotlib, Agg).

    score-sde --mode=plot --workdir=runs/default     # prints the paths of the files it writes:
    runs/default/plots/loss.png       training loss (and eval loss) against step, log y
    runs/default/plots/samples.png    the newest sample picture, titled with its step and source

It reads only the work directory, never the config or a checkpoint (no JAX): `metrics.jsonl`
(one JSON record per line, {"step", "time", tag: value, ...}: score_sde.store.metrics_log) and
the pictures the other modes write (image_io.save_samples):

- `samples/iter_<step>/sample.png`: training snapshots (EMA samples);
- `samples/ckpt_<step>[_<task>]_<method>_nfe<N>_seed<S>_<hash>.png`: sample mode;
- `eval/<step>/<method>.png` and, for 2-D toys, `eval/<step>/scatter.png`: eval mode.

The newest is the one of the highest step, then the latest written (file times have whole
seconds: among one step's pictures of the same second a toy's scatter.png, data beside samples,
wins). matplotlib is imported only when a plot is drawn (image_io.figure: Agg, no display).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import sys
from typing import TextIO

from score_sde.store import fs, image_io, metrics_log

PLOTS_DIR = "plots"
# metrics.jsonl tag -> legend of its curve (eval mode writes its results with the prefix eval/)
LOSS_TAGS = {
    "training_loss": "training loss",
    "eval_loss": "eval loss (EMA params, during training)",
    "eval/eval_loss": "eval loss (eval mode)",
}


def read_metrics(workdir: str) -> list[dict]:
    """The records logged in `workdir` (score_sde.store.metrics_log.read); none raises one
    ValueError naming the path and what to run."""
    records = metrics_log.read(workdir)
    if records is None:
        path = os.path.join(workdir, metrics_log.JSONL)
        raise ValueError(
            f"{path} not found: nothing to plot yet; train first "
            f"(score-sde --mode=train --workdir={workdir}) to write the metrics"
        )
    return records


def loss_curves(records: list[dict]) -> dict[str, tuple[list[int], list[float]]]:
    """{tag: (steps, values)} of LOSS_TAGS present in `records`, sorted by step; a step recorded
    twice (a run resumed from an earlier checkpoint replays steps) keeps its last value, and
    non-finite values are dropped."""
    curves = {}
    for tag in LOSS_TAGS:
        by_step = {r["step"]: r[tag] for r in records if isinstance(r.get(tag), int | float)}
        points = sorted((s, float(v)) for s, v in by_step.items() if math.isfinite(v))
        if points:
            curves[tag] = ([s for s, _ in points], [v for _, v in points])
    return curves


@dataclasses.dataclass(frozen=True)
class Picture:
    """A sample picture of the run: its file (and its path under the work directory), the step
    it shows and which mode wrote it."""

    path: str
    rel: str
    step: int
    source: str


# (pattern under the work directory, its source label); group 1 is the step
_PICTURES = (
    ("samples/iter_*/sample.png", r"samples/iter_(\d+)/sample\.png", "training snapshot (EMA)"),
    ("samples/ckpt_*.png", r"samples/ckpt_(\d+)_(.+)\.png", "sample mode: {}"),
    ("eval/*/*.png", r"eval/(\d+)/(.+)\.png", "eval mode: {}"),
)


def sample_pictures(workdir: str) -> list[Picture]:
    """Every sample picture of `workdir`, oldest first: by step, then time written, then a toy's
    scatter.png last among pictures of one step written within the same second."""
    root = fs.path(workdir)
    found = []
    for pattern, regex, label in _PICTURES:
        for p in root.glob(pattern):
            rel = os.fspath(p)[len(os.fspath(root)) + 1 :].replace(os.sep, "/")
            m = re.fullmatch(regex, rel)
            if m is None:
                continue
            pic = Picture(os.fspath(p), rel, int(m[1]), label.format(*m.groups()[1:]))
            found.append(((pic.step, p.stat().mtime, p.name == "scatter.png"), pic))
    return [pic for _, pic in sorted(found, key=lambda kp: kp[0])]


def _save(fig, path: str) -> None:
    fs.write_bytes(path, image_io.figure_png(fig))


def plot_loss(curves: dict[str, tuple[list[int], list[float]]], path: str, title: str) -> None:
    """Draws `curves` ({tag: (steps, values)}) against step as a PNG at `path`; log y when every
    value is positive."""
    fig = image_io.figure(7, 4.5)
    ax = fig.add_subplot()
    for tag, (steps, values) in curves.items():
        style = "-" if tag == "training_loss" else "o-"
        ax.plot(steps, values, style, label=LOSS_TAGS[tag], markersize=3, linewidth=1.2)
    if all(v > 0 for _, values in curves.values() for v in values):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    _save(fig, path)


def plot_picture(picture: Picture, path: str, title: str) -> None:
    """Shows the image file `picture.path` (uint8, gray or RGB) at `path`, titled `title`,
    pixels enlarged without smoothing."""
    image = image_io.read_image(picture.path)
    h, w = image.shape[:2]
    width = 7.0
    fig = image_io.figure(width, width * h / w + 0.6)
    ax = fig.add_subplot()
    if image.shape[-1] == 1:
        ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(image, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title)
    _save(fig, path)


def plot(workdir: str, *, stream: TextIO | None = None) -> list[str]:
    """Writes `<workdir>/plots/loss.png` and (when the run has a sample picture)
    `<workdir>/plots/samples.png`; prints each path written on its own line to `stream`
    (default stdout) and returns them. Raises ValueError when the run has no metrics."""
    stream = stream or sys.stdout
    metrics = os.path.join(workdir, "metrics.jsonl")
    curves = loss_curves(read_metrics(workdir))
    if not curves:
        raise ValueError(
            f"{metrics} has no {' or '.join(LOSS_TAGS)} records to plot: train for at least "
            f"config.training.log_freq steps (score-sde --mode=train --workdir={workdir})"
        )
    out = os.path.join(workdir, PLOTS_DIR)
    name = os.path.basename(os.path.normpath(workdir))
    last = max(steps[-1] for steps, _ in curves.values())
    written = [os.path.join(out, "loss.png")]
    plot_loss(curves, written[0], f"{name}: loss by step (last step {last})")
    pictures = sample_pictures(workdir)
    if pictures:
        pic = pictures[-1]
        written.append(os.path.join(out, "samples.png"))
        plot_picture(pic, written[1], f"{name}: step {pic.step}, {pic.source}\n{pic.rel}")
    else:
        print(
            f"note: no sample picture in {workdir} yet (training snapshots, --mode=sample and "
            "--mode=eval write them): plotted the loss only",
            file=sys.stderr,
        )
    for path in written:
        print(path, file=stream, flush=True)
    return written
