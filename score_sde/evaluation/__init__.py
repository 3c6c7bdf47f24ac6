"""Evaluation: eval loss, bits/dim, and FID / IS / KID with pytorch-fid's InceptionV3 in Flax.

- `fid`: the metrics on activations (numpy float64) and reference-statistics files.
- `inception`: the network; `python -m score_sde.evaluation.inception` gets its weights (`weights`).
- `weights`: download, SHA-256 check and conversion of pytorch-fid's `.pth`.
- `evaluator`: jitted, sharded feature extraction, accumulation across hosts, `compute_metrics`.
- One evaluator per metric, each taking plain callables (a loss, a log-density, a sampler) and
  batch iterators: `loss` (eval loss), `bits_per_dim` (log-likelihood of a split), and
  `sample_quality` (samples in rounds, FID / IS / KID); `split` is their per-example loop.
- `reference_stats`: command that writes a dataset's statistics.

The names below are imported on first use, so that `python -m score_sde.evaluation.inception` runs
a module the package has not imported yet.
"""

_EVALUATOR = (
    "FeatureAccumulator",
    "compute_dataset_statistics",
    "compute_metrics",
    "dataset_features",
    "get_inception_fn",
    "to_inception_input",
)
_FID = (
    "compute_statistics",
    "fid_from_activations",
    "frechet_distance",
    "inception_score",
    "kernel_inception_distance",
    "load_statistics",
    "save_statistics",
)
_INCEPTION = ("InceptionV3", "load_inception")

__all__ = sorted(_EVALUATOR + _FID + _INCEPTION)


def __getattr__(name: str):
    if name in _EVALUATOR:
        from score_sde.evaluation import evaluator as module
    elif name in _FID:
        from score_sde.evaluation import fid as module
    elif name in _INCEPTION:
        from score_sde.evaluation import inception as module
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(module, name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
