"""FID, Inception Score and KID against closed forms and float64 references."""

import numpy as np
import pytest
import scipy.linalg

from score_sde.evaluation import fid
from tests.helpers import fake_inception, npz_config


def _spd(rng, d, scale=1.0):
    a = rng.standard_normal((d, d))
    return scale * (a @ a.T / d + 0.1 * np.eye(d))


def test_frechet_closed_form_gaussians():
    rng = np.random.default_rng(0)
    d = 16
    s = _spd(rng, d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    # Commuting covariances S and 4S: tr((S 4S)^{1/2}) = 2 tr(S), so FID = |dmu|^2 + tr(S).
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s)
    assert fid.frechet_distance(mu1, s, mu2, 4 * s) == pytest.approx(expected, rel=1e-10)
    # Diagonal: sum (sqrt(a) - sqrt(b))^2.
    a, b = rng.uniform(0.1, 2, d), rng.uniform(0.1, 2, d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = fid.frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
    assert got == pytest.approx(expected, rel=1e-10)
    assert fid.frechet_distance(mu1, s, mu1, s) == pytest.approx(0.0, abs=1e-9)
    assert fid.frechet_distance(1.0, 4.0, 3.0, 9.0) == pytest.approx(4.0 + 1.0)


def test_frechet_matches_sqrtm_reference_on_activations():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((500, 32)) @ rng.standard_normal((32, 32))
    b = rng.standard_normal((400, 32)) @ rng.standard_normal((32, 32)) + 0.3
    mu1, s1 = fid.compute_statistics(a)
    mu2, s2 = fid.compute_statistics(b)
    np.testing.assert_allclose(mu1, a.mean(0))
    np.testing.assert_allclose(s1, np.cov(a, rowvar=False))
    # pytorch-fid's formula: tr(sqrtm(S1 S2)) in float64.
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    assert np.abs(covmean.imag).max() < 1e-6
    ref = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real)
    got = fid.fid_from_activations(a, b)
    assert got == pytest.approx(ref, rel=1e-9)
    assert got == pytest.approx(fid.frechet_distance(mu2, s2, mu1, s1), rel=1e-9)  # symmetric


def test_frechet_singular_covariance_is_finite():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((10, 64)), rng.standard_normal((10, 64))  # rank 9 < 64
    value = fid.fid_from_activations(a, b)
    assert np.isfinite(value) and value > 0


def test_frechet_shape_error():
    with pytest.raises(ValueError, match="mismatched"):
        fid.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_inception_score_definition():
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((60, 7)) * 2
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    for splits in (1, 3):
        scores = []
        for part in np.array_split(p, splits):
            py = part.mean(0)
            kl = [sum(q[j] * np.log(q[j] / py[j]) for j in range(7)) for q in part]
            scores.append(np.exp(np.mean(kl)))
        mean, std = fid.inception_score(logits, num_splits=splits)
        assert mean == pytest.approx(np.mean(scores), rel=1e-10)
        assert std == pytest.approx(np.std(scores), abs=1e-10)
    # Extremes: identical predictions -> 1; confident and balanced over K classes -> K.
    assert fid.inception_score(np.zeros((10, 5)))[0] == pytest.approx(1.0)
    one_hot = np.where(np.eye(5)[np.arange(20) % 5] > 0, 50.0, -50.0)
    assert fid.inception_score(one_hot)[0] == pytest.approx(5.0, rel=1e-6)


def test_kid_unbiased_estimator_formula():
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((5, 3)), rng.standard_normal((5, 3)) + 1
    k = lambda a, b: (a @ b / 3 + 1) ** 3
    xx = np.mean([k(x[i], x[j]) for i in range(5) for j in range(5) if i != j])
    yy = np.mean([k(y[i], y[j]) for i in range(5) for j in range(5) if i != j])
    xy = np.mean([k(x[i], y[j]) for i in range(5) for j in range(5)])
    # Subsets of the full size are permutations, which leave the estimate unchanged.
    mean, std = fid.kernel_inception_distance(x, y, num_subsets=3, subset_size=5)
    assert mean == pytest.approx(xx + yy - 2 * xy, rel=1e-10) and std < 1e-10


def test_kid_near_zero_on_identical_distributions_positive_otherwise():
    rng = np.random.default_rng(5)
    d = 32
    a, b = rng.standard_normal((1000, d)), rng.standard_normal((1000, d))
    mean, std = fid.kernel_inception_distance(a, b, num_subsets=30, subset_size=300)
    # Unbiased: |mean| within a few standard errors of 0 (subsets overlap: be conservative).
    assert abs(mean) < 3 * std / np.sqrt(10)
    shifted = rng.standard_normal((1000, d)) + 0.5
    mean2, std2 = fid.kernel_inception_distance(a, shifted, num_subsets=30, subset_size=300)
    assert mean2 > 10 * std2 and mean2 > 10 * abs(mean)


def test_statistics_file_round_trip(tmp_path):
    rng = np.random.default_rng(6)
    acts = rng.standard_normal((50, 8)).astype(np.float32)
    path = tmp_path / "stats.npz"
    fid.save_statistics(path, acts, keep_activations=20)
    with np.load(path) as f:
        assert set(f.files) == {"mu", "sigma", "pool_3"}  # pytorch-fid reads mu, sigma
        assert f["mu"].dtype == np.float64 and f["sigma"].shape == (8, 8)
    stats = fid.load_statistics(path)
    np.testing.assert_array_equal(stats["pool_3"], acts[:20])
    assert fid.frechet_distance(stats["mu"], stats["sigma"], *fid.compute_statistics(acts)) < 1e-9
    with pytest.raises(ValueError, match="reference_stats"):
        fid.load_statistics(tmp_path / "missing.npz")


def test_statistics_from_raw_pool3_features(tmp_path):
    """The original score_sde's <dataset>_stats.npz holds only pool_3 features: mu and sigma are
    computed from them, and FID against the features' own mu / sigma is 0."""
    rng = np.random.default_rng(7)
    feats = rng.standard_normal((300, 2048)).astype(np.float32)
    np.savez(tmp_path / "cifar10_stats.npz", pool_3=feats)
    stats = fid.load_statistics(tmp_path / "cifar10_stats.npz")
    mu, sigma = fid.compute_statistics(feats)
    np.testing.assert_allclose(stats["mu"], mu)
    np.testing.assert_allclose(stats["sigma"], sigma)
    # 300 features in 2048-D: a rank-deficient sigma, whose square root costs ~1e-4 of accuracy
    assert abs(fid.frechet_distance(stats["mu"], stats["sigma"], mu, sigma)) < 1e-3
    np.savez(tmp_path / "bad.npz", logits=feats)
    with pytest.raises(ValueError, match="'pool_3' features"):
        fid.load_statistics(tmp_path / "bad.npz")
    np.savez(tmp_path / "bad2.npz", pool_3=feats[:, :10])
    with pytest.raises(ValueError, match=r"\[N >= 2, 2048\]"):
        fid.load_statistics(tmp_path / "bad2.npz")


def test_dataset_statistics_see_every_example_once(tmp_path):
    import jax
    from jax.sharding import Mesh

    from score_sde.evaluation import evaluator

    cfg = npz_config(tmp_path)
    mesh = Mesh(np.array(jax.devices()[:4]), ("data",))
    out = tmp_path / "stats.npz"
    stats = evaluator.compute_dataset_statistics(
        cfg, "train", out, batch_size=8, mesh=mesh, inception_fn=fake_inception
    )
    # No flip, no dequantization, inverse-scaled to [0, 1]: features are exactly 0..12.
    np.testing.assert_allclose(np.sort(stats["pool_3"][:, 0]), np.arange(13), atol=1e-4)
    np.testing.assert_allclose(stats["mu"][0], 6.0, atol=1e-4)
    assert fid.load_statistics(out)["sigma"].shape == (2, 2)


def test_over_split_drops_padding_and_stacks_per_batch_values(tmp_path):
    import jax

    from score_sde.data import datasets
    from score_sde.evaluation import split

    cfg = npz_config(tmp_path)
    ds = datasets.get_dataset(cfg, "train", batch_size=4, seed=0, uniform_dequantization=False)

    def fn(key, x):
        return {"v": (x.mean(axis=(1, 2, 3)) + 1) / 2 * 255, "n": jax.numpy.asarray(x.shape[0])}

    out = split.over_split(fn, ds.epoch(), jax.random.key(0))
    np.testing.assert_allclose(out["v"], np.arange(13), atol=1e-4)  # 13 of 4 padded batches
    np.testing.assert_array_equal(out["n"], [4, 4, 4, 4])  # per batch: the padded batch size
    first = split.over_split(fn, ds.epoch(), jax.random.key(0), num_examples=6)
    np.testing.assert_allclose(first["v"], np.arange(6), atol=1e-4)
    assert len(first["n"]) == 2  # stopped after the batch that reached 6 examples


def test_over_split_keys_and_cache():
    """Batch i sees fold_in(key, i); a cache's stored result replaces the computation."""
    import jax

    from score_sde.evaluation import split

    key = jax.random.key(3)
    batches = [{"x": np.zeros((2, 1), np.float32), "mask": np.ones(2, bool)} for _ in range(3)]
    draw = lambda k, x: {"u": jax.random.uniform(k, (x.shape[0],))}
    out = split.over_split(draw, batches, key)
    expected = [jax.random.uniform(jax.random.fold_in(key, i), (2,)) for i in range(3)]
    np.testing.assert_array_equal(out["u"], np.concatenate(expected))
    calls, stored = [], {1: {"u": np.array([7.0, 8.0])}}

    def cache(i, compute):
        calls.append(i)
        return stored[i] if i in stored else compute()

    cached = split.over_split(draw, batches, key, cache=cache)
    assert calls == [0, 1, 2]
    np.testing.assert_array_equal(cached["u"][2:4], [7.0, 8.0])
    np.testing.assert_array_equal(cached["u"][:2], out["u"][:2])


def test_mean_loss_is_the_mean_over_batches_with_folded_keys():
    import jax

    from score_sde.evaluation import loss

    key = jax.random.key(1)
    batches = ({"x": np.full((2,), float(i))} for i in range(100))
    fn = lambda k, b: b["x"].sum() + jax.random.uniform(k)
    got = loss.mean_loss(fn, batches, key, num_batches=3)
    want = np.mean(
        [2.0 * i + float(jax.random.uniform(jax.random.fold_in(key, i))) for i in range(3)]
    )
    assert got == pytest.approx(want, rel=1e-6)
    with pytest.raises(ValueError, match="empty"):
        loss.mean_loss(fn, iter(()), key, num_batches=3)


def test_draw_trims_the_last_round_and_keeps_images_of_early_rounds():
    from score_sde.evaluation import sample_quality

    rounds = []

    def sample_fn(i):
        rounds.append(i)
        return np.full((4, 2, 2, 1), i / 10, np.float32), np.asarray(10 + i)

    drawn, nfe = sample_quality.draw(sample_fn, 10, 4)
    assert rounds == [0, 1, 2] and nfe == 12
    want = np.float32([0] * 4 + [0.1] * 4 + [0.2] * 2)
    np.testing.assert_array_equal(drawn["samples"][:, 0, 0, 0], want)
    features = sample_quality.inception_features(fake_inception, lambda x: x)
    drawn, _ = sample_quality.draw(sample_fn, 10, 4, features=features, keep=5)
    assert drawn["pool_3"].shape == (10, 2) and drawn["logits"].shape == (10, 2)
    np.testing.assert_allclose(drawn["pool_3"][:, 0], want * 255, rtol=1e-6)
    # rounds 0 and 1 start below keep=5: their 8 images are kept, round 2's are not
    assert drawn["images"].shape == (8, 2, 2, 1) and drawn["images"].dtype == np.uint8
    assert drawn["images"][4, 0, 0, 0] == round(0.1 * 255)


def test_bits_per_dim_results_by_hand():
    import math

    import jax

    from score_sde.evaluation import bits_per_dim

    passes = [
        {"logp": np.array([-100.0, -200.0]), "nfe": np.array([10])},
        {"logp": np.array([-300.0, -400.0]), "nfe": np.array([20])},
    ]
    d = 12
    got = bits_per_dim.image_results(passes, d, centered=True)
    by_hand = [-lp / (d * math.log(2)) + 8 - 1 for lp in (-100.0, -200.0, -300.0, -400.0)]
    assert got["bpd"] == pytest.approx(np.mean(by_hand))
    assert got["bpd_per_repeat"] == pytest.approx([np.mean(by_hand[:2]), np.mean(by_hand[2:])])
    assert bits_per_dim.summary(passes) == {
        "likelihood_examples": 2,
        "likelihood_repeats": 2,
        "likelihood_nfe_mean": 15.0,
    }
    # one pass per draw, each with its key fold_in(key, r) and inside its own store
    entered = []

    class Store:
        def __init__(self, r):
            self.r = r

        def __enter__(self):
            entered.append(self.r)
            return lambda i, compute: compute()

        def __exit__(self, *exc):
            return None

    batch = {"x": np.zeros((2, 1), np.float32), "mask": np.array([True, False])}
    key = jax.random.key(0)
    out = bits_per_dim.log_likelihoods(
        lambda k, x: {"logp": jax.random.normal(k, (2,)), "nfe": jax.numpy.asarray(1)},
        lambda r: [batch],
        key,
        num_repeats=2,
        num_examples=1,
        store=Store,
    )
    assert entered == [0, 1]
    for r in range(2):
        want = jax.random.normal(jax.random.fold_in(jax.random.fold_in(key, r), 0), (2,))[:1]
        np.testing.assert_array_equal(out[r]["logp"], want)


def test_compute_metrics_with_reference():
    from score_sde.evaluation import evaluator

    rng = np.random.default_rng(7)
    pool, ref = rng.standard_normal((300, 4)), rng.standard_normal((300, 4)) + 1
    logits = rng.standard_normal((300, 10))
    mu, sigma = fid.compute_statistics(ref)
    m = evaluator.compute_metrics(
        (pool, logits),
        {"mu": mu, "sigma": sigma, "pool_3": ref},
        num_samples=200,
        kid_subsets=5,
        kid_subset_size=100,
    )
    assert m["num_samples"] == 200
    assert m["fid"] == pytest.approx(
        fid.frechet_distance(*fid.compute_statistics(pool[:200]), mu, sigma)
    )
    assert m["inception_score"] == pytest.approx(fid.inception_score(logits[:200])[0])
    assert m["kid"] > 0
    with pytest.raises(ValueError, match="asked for"):
        evaluator.compute_metrics((pool, logits), num_samples=301)
