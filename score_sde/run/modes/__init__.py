"""The launcher's modes, as importable functions: `run(mode, config, workdir)`.

- train: `modes.train.train_and_evaluate` (then eval mode if config.training.eval_after_training)
- eval: `modes.eval.evaluate`
- sample: `modes.sample.sample` (unconditional, or with config.condition: class, inpaint,
  colorize)
- train_classifier: `modes.train_classifier.train_classifier` (noise-conditional classifier)
- plot: `modes.plot.plot` (the loss curve and the newest sample picture as PNGs under
  <workdir>/plots; reads only the work directory: the config is not used)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from score_sde import config as config_lib

if TYPE_CHECKING:
    from ml_collections import ConfigDict

MODES = ("train", "eval", "sample", "train_classifier", "plot")


class Preempted(Exception):
    """A SIGTERM or SIGINT stopped training before the end, after a preemption checkpoint;
    `signum` is the signal (the launcher exits with status 128 + signum)."""

    def __init__(self, step: int, signum: int):
        import signal

        name = signal.Signals(signum).name
        super().__init__(f"{name}: preempted at step {step}; rerun the same command to resume")
        self.step, self.signum = step, signum


def run(
    mode: str, config: config_lib.Config | ConfigDict | Mapping | None, workdir: str, **kw: Any
) -> Any:
    """Checks `config` (a ConfigDict, dict or typed Config) and runs `mode` in `workdir`.

    Returns what the mode returns (train: the final state; plot: the paths written). Raises
    ValueError for bad input, Preempted when a SIGTERM stopped training early. Plot ignores
    `config` (None is fine): it reads only `workdir`.
    """
    if mode not in MODES:
        raise ValueError(f"--mode={mode!r} is not a mode; use one of {', '.join(MODES)}")
    if mode == "plot":
        from score_sde.run.modes.plot import plot

        return plot(workdir, **kw)
    cfg = config if isinstance(config, config_lib.Config) else config_lib.from_config(config)
    match mode:
        case "train":
            from score_sde.run.modes.train import train_and_evaluate

            state, signum = train_and_evaluate(cfg, workdir, **kw)
            if signum is not None:
                raise Preempted(int(state.step), signum)
            if cfg.training.eval_after_training:
                from score_sde.run.modes.eval import evaluate

                kw.pop("dataset", None)
                return evaluate(cfg, workdir, **kw)
            return state
        case "eval":
            from score_sde.run.modes.eval import evaluate

            return evaluate(cfg, workdir, **kw)
        case "sample":
            from score_sde.run.modes.sample import sample

            return sample(cfg, workdir, **kw)
        case "train_classifier":
            from score_sde.run.modes.train_classifier import train_classifier

            state, signum = train_classifier(cfg, workdir, **kw)
            if signum is not None:
                raise Preempted(int(state.step), signum)
            return state
