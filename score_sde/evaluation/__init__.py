"""Sample-quality evaluation: FID, Inception Score, KID with pytorch-fid's InceptionV3 in Flax.

- `fid`: the metrics on activations (numpy float64) and reference-statistics files.
- `inception`: the network, weight conversion (`python -m score_sde.evaluation.inception`).
- `evaluator`: jitted, sharded feature extraction, accumulation across hosts, `compute_metrics`.
- `reference_stats`: command that writes a dataset's statistics.
"""

from score_sde.evaluation.evaluator import (
    FeatureAccumulator,
    compute_dataset_statistics,
    compute_metrics,
    dataset_features,
    evaluate_split,
    get_inception_fn,
    to_inception_input,
)
from score_sde.evaluation.fid import (
    compute_statistics,
    fid_from_activations,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    load_statistics,
    save_statistics,
)
from score_sde.evaluation.inception import InceptionV3, load_inception

__all__ = [
    "FeatureAccumulator",
    "InceptionV3",
    "compute_dataset_statistics",
    "compute_metrics",
    "compute_statistics",
    "dataset_features",
    "evaluate_split",
    "fid_from_activations",
    "frechet_distance",
    "get_inception_fn",
    "inception_score",
    "kernel_inception_distance",
    "load_inception",
    "load_statistics",
    "save_statistics",
    "to_inception_input",
]
