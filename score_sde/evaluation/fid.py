"""Sample-quality metrics from Inception activations: FID, Inception Score, KID (float64, numpy).

- FID (Heusel et al. 2017): ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2}), with
  tr((S1 S2)^{1/2}) = sum_i sqrt(lambda_i(S1^{1/2} S2 S1^{1/2})), a symmetric PSD matrix, so the
  square root needs only `eigh` (no complex parts, no sqrtm iterations).
- Inception Score (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))) per split; mean and std over
  splits (1 split as the original score_sde / TF-GAN; pytorch papers often use 10).
- KID (Binkowski et al. 2018): unbiased MMD^2 with the kernel k(x, y) = (x.y / d + 1)^3, averaged
  over random subsets.

Reference statistics are `.npz` files with `mu` [D] and `sigma` [D, D] like pytorch-fid's (its
published files load as they are); ours may also hold `pool_3` activations for KID.
"""

from __future__ import annotations

import os

import numpy as np

from score_sde.store import fs


def compute_statistics(activations) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and unbiased covariance [D, D] (float64) of `activations` [N, D], N >= 2."""
    act = np.asarray(activations, np.float64)
    if act.ndim != 2 or act.shape[0] < 2:
        raise ValueError(f"activations must be [N >= 2, D], got shape {act.shape}")
    return act.mean(0), np.cov(act, rowvar=False)


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a (numerically) PSD matrix; negative eigenvalues clipped to 0."""
    w, v = np.linalg.eigh((matrix + matrix.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64."""
    mu1, mu2 = (
        np.atleast_1d(np.asarray(mu1, np.float64)),
        np.atleast_1d(np.asarray(mu2, np.float64)),
    )
    s1, s2 = (
        np.atleast_2d(np.asarray(sigma1, np.float64)),
        np.atleast_2d(np.asarray(sigma2, np.float64)),
    )
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != mu1.shape * 2:
        raise ValueError(
            f"mismatched statistics: mu {mu1.shape} vs {mu2.shape}, sigma {s1.shape} vs {s2.shape}"
        )
    root1 = _sqrt_psd(s1)
    middle = root1 @ s2 @ root1
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    tr_covmean = np.sqrt(np.clip(eig, 0.0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)


def fid_from_activations(act1, act2) -> float:
    """FID between two sets of activations [N, D] and [M, D]."""
    return frechet_distance(*compute_statistics(act1), *compute_statistics(act2))


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def inception_score(logits, num_splits: int = 1) -> tuple[float, float]:
    """(mean, std) over `num_splits` of exp(mean_x KL(p(y|x) || p_split(y))); logits [N, K]."""
    logp = _log_softmax(np.asarray(logits, np.float64))
    n = logp.shape[0]
    if not 1 <= num_splits <= n:
        raise ValueError(f"num_splits ({num_splits}) must be in [1, N={n}]")
    scores = []
    for part in np.array_split(logp, num_splits):
        p = np.exp(part)
        log_py = np.log(p.mean(0))
        scores.append(np.exp(np.mean(np.sum(p * (part - log_py), axis=1))))
    return float(np.mean(scores)), float(np.std(scores))


def _polynomial_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3 (diagonals of Kxx, Kyy left out)."""
    d, m, n = x.shape[1], x.shape[0], y.shape[0]

    def kernel(a, b):
        k = a @ b.T / d + 1.0
        return k * k * k

    kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
    xx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    yy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(xx + yy - 2.0 * kxy.mean())


def kernel_inception_distance(
    act1, act2, *, num_subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID: (mean, std) over `num_subsets` of the unbiased polynomial-kernel MMD^2.

    Subsets of min(subset_size, N, M) rows are drawn without replacement from each set.
    """
    x, y = np.asarray(act1, np.float64), np.asarray(act2, np.float64)
    m = min(subset_size, len(x), len(y))
    if m < 2:
        raise ValueError(f"KID needs at least 2 activations per set, got {len(x)} and {len(y)}")
    rng = np.random.default_rng(seed)
    values = [
        _polynomial_mmd2(
            x[rng.choice(len(x), m, replace=False)], y[rng.choice(len(y), m, replace=False)]
        )
        for _ in range(num_subsets)
    ]
    return float(np.mean(values)), float(np.std(values))


def save_statistics(path: str | os.PathLike, activations, *, keep_activations: int = 0) -> None:
    """Write pytorch-fid's layout: `mu`, `sigma` (+ up to `keep_activations` rows as `pool_3`)."""
    act = np.asarray(activations)
    mu, sigma = compute_statistics(act)
    arrays = {"mu": mu, "sigma": sigma}
    if keep_activations:
        arrays["pool_3"] = act[:keep_activations].astype(np.float32)
    fs.save_npz(path, **arrays)


def load_statistics(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """{'mu', 'sigma', 'pool_3'?} from a statistics `.npz`: pytorch-fid's layout (mu, sigma),
    ours (mu, sigma, pool_3), or raw Inception features only (`pool_3` [N, 2048], as in the
    original score_sde's `cifar10_stats.npz`), whose mu and sigma are computed here."""
    if not fs.path(path).is_file():
        raise ValueError(
            f"no reference statistics at {str(path)!r}; compute them with "
            "python -m score_sde.evaluation.reference_stats --config=... --out=PATH, or use a "
            "published pytorch-fid .npz (fid_stats_cifar10_train.npz) or the original "
            "score_sde's <dataset>_stats.npz (pool_3 features)"
        )
    arrays = fs.load_npz(path)
    if "mu" in arrays and "sigma" in arrays:
        return arrays
    if "pool_3" in arrays:
        pool = np.asarray(arrays["pool_3"], np.float64)
        if pool.ndim != 2 or pool.shape[1] != 2048 or len(pool) < 2:
            raise ValueError(
                f"{str(path)!r}: pool_3 must be Inception features [N >= 2, 2048], got {pool.shape}"
            )
        arrays["mu"], arrays["sigma"] = compute_statistics(pool)
        return arrays
    raise ValueError(
        f"{str(path)!r} has arrays {sorted(arrays)}; expected 'mu' and 'sigma' (pytorch-fid) or "
        "'pool_3' features (the original score_sde)"
    )
