"""The launcher's modes, as importable functions: `run(mode, config, workdir)`.

- train: `modes.train.train_and_evaluate` (then eval mode if config.training.eval_after_training)
- eval: `modes.eval.evaluate`
- sample: `modes.sample.sample`, or with config.condition.task set (class, inpaint, colorize)
  `modes.sample_conditional.sample_conditional`
- train_classifier: `modes.train_classifier.train_classifier` (noise-conditional classifier)
"""

from __future__ import annotations

MODES = ("train", "eval", "sample", "train_classifier")


def run(mode: str, config, workdir: str, **kw):
    """Checks `config` (ConfigDict) and runs `mode` in `workdir`."""
    from score_sde.modes.config import from_config

    if mode not in MODES:
        raise ValueError(f"--mode={mode!r} is not a mode; use one of {', '.join(MODES)}")
    cfg = from_config(config)
    match mode:
        case "train":
            from score_sde.modes.train import train_and_evaluate
            from score_sde.parallel import to_host

            state = train_and_evaluate(cfg, workdir, **kw)
            if (
                cfg.training.eval_after_training
                and int(to_host(state.step)) == cfg.training.n_iters
            ):
                from score_sde.modes.eval import evaluate

                kw.pop("dataset", None)
                return evaluate(cfg, workdir, **kw)
            return state
        case "eval":
            from score_sde.modes.eval import evaluate

            return evaluate(cfg, workdir, **kw)
        case "sample":
            from score_sde.modes.conditioning import ConditionConfig

            if ConditionConfig.from_config(config).task != "none":  # controllable generation
                from score_sde.modes.sample_conditional import sample_conditional

                return sample_conditional(cfg, workdir, **kw)
            from score_sde.modes.sample import sample

            return sample(cfg, workdir, **kw)
        case "train_classifier":
            from score_sde.modes.train_classifier import train_classifier

            return train_classifier(cfg, workdir, **kw)
