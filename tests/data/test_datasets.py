"""Data pipelines: shapes, ranges, dequantization, flips, (seed, step) order, host shards."""

import os

import numpy as np
import pytest

from score_sde.config import DataConfig
from score_sde.data import datasets, preprocess
from score_sde.store import image_io


def _config(**data) -> DataConfig:
    base = dict(
        dataset="npz",
        image_size=8,
        num_channels=3,
        centered=False,
        random_flip=False,
        uniform_dequantization=False,
    )
    return DataConfig(**{**base, **data})


@pytest.fixture
def npz_path(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "data.npz"
    x = rng.integers(0, 256, (37, 8, 8, 3), dtype=np.uint8)
    # Encode the example index in pixel [0, 0, 0] and make images asymmetric for flip checks.
    x[:, 0, 0, 0] = np.arange(37)
    np.savez(path, x_train=x, y_train=np.arange(37), x_test=x[:11])
    return str(path), x


def test_batch_shapes_ranges_and_labels(npz_path):
    path, x = npz_path
    ds = datasets.get_dataset(_config(path=path), "train", batch_size=5, seed=0)
    assert ds.num_examples == 37
    b = ds.batch(3)
    assert b["x"].shape == (5, 8, 8, 3) and b["x"].dtype == np.float32
    assert 0.0 <= b["x"].min() and b["x"].max() <= 1.0
    idx = ds.indices(3)
    np.testing.assert_array_equal(b["label"], idx)
    np.testing.assert_allclose(b["x"], x[idx] / 255.0, atol=1e-6)


def test_centered_scaler_round_trip(npz_path):
    path, x = npz_path
    cfg = _config(path=path, centered=True)
    b = datasets.get_dataset(cfg, "train", batch_size=4, seed=0).batch(0)
    assert -1.0 <= b["x"].min() and b["x"].max() <= 1.0 and b["x"].min() < -0.5
    inv = preprocess.get_data_inverse_scaler(cfg)
    scale = preprocess.get_data_scaler(cfg)
    np.testing.assert_allclose(scale(inv(b["x"])), b["x"], atol=1e-6)


def test_order_is_pure_function_of_seed_and_step(npz_path):
    path, _ = npz_path
    cfg = _config(path=path, random_flip=True, uniform_dequantization=True)
    a = datasets.get_dataset(cfg, "train", batch_size=6, seed=3)
    b = datasets.get_dataset(cfg, "train", batch_size=6, seed=3)
    for step in (7, 0, 20):  # any order: a resumed run replays the same batches
        np.testing.assert_array_equal(a.batch(step)["x"], b.batch(step)["x"])
    c = datasets.get_dataset(cfg, "train", batch_size=6, seed=4)
    assert not np.array_equal(a.indices(0), c.indices(0))


def test_each_epoch_is_a_permutation(npz_path):
    path, _ = npz_path
    ds = datasets.get_dataset(_config(path=path), "train", batch_size=1, seed=0)
    first = np.concatenate([ds.indices(s) for s in range(37)])
    second = np.concatenate([ds.indices(s) for s in range(37, 74)])
    assert sorted(first) == list(range(37)) and sorted(second) == list(range(37))
    assert not np.array_equal(first, second)


def test_multi_host_shards_are_disjoint_and_cover_global_batch(npz_path):
    path, _ = npz_path
    cfg = _config(path=path)
    single = datasets.get_dataset(cfg, "train", batch_size=12, seed=1)
    hosts = [
        datasets.get_dataset(cfg, "train", batch_size=3, seed=1, process_index=p, process_count=4)
        for p in range(4)
    ]
    for step in (0, 1, 5):
        parts = [h.indices(step) for h in hosts]
        allidx = np.concatenate(parts)
        # Disjoint within an epoch, and identical to the single-process global batch.
        np.testing.assert_array_equal(allidx, single.indices(step))
        if step == 0:
            assert len(set(allidx.tolist())) == 12
    with pytest.raises(ValueError, match="process_index"):
        datasets.get_dataset(cfg, "train", batch_size=3, seed=1, process_index=4, process_count=4)


def test_flip_and_dequantization(npz_path):
    path, x = npz_path
    cfg = _config(path=path, random_flip=True, uniform_dequantization=True)
    ds = datasets.get_dataset(cfg, "train", batch_size=37, seed=0)
    b, idx = ds.batch(0)["x"], ds.indices(0)
    k = x[idx].astype(np.float32)
    flipped = k[:, :, ::-1]
    # Each example is (k + U) / 256 of either the image or its mirror, U in [0, 1).
    is_plain = np.all((b * 256 >= k) & (b * 256 < k + 1), axis=(1, 2, 3))
    is_flip = np.all((b * 256 >= flipped) & (b * 256 < flipped + 1), axis=(1, 2, 3))
    assert np.all(is_plain | is_flip)
    assert 5 < is_flip.sum() < 32  # about half flipped
    u = (b * 256 - np.where(is_flip[:, None, None, None], flipped, k)).ravel()
    assert abs(u.mean() - 0.5) < 0.02 and abs(u.var() - 1 / 12) < 0.01
    # No flip on the test split (augment defaults to split == 'train').
    t = datasets.get_dataset(cfg, "test", batch_size=11, seed=0, uniform_dequantization=False)
    e = next(t.epoch())["x"]
    np.testing.assert_allclose(e, x[:11] / 255.0, atol=1e-6)


def test_epoch_includes_last_partial_batch_across_hosts(npz_path):
    path, x = npz_path
    cfg = _config(path=path)
    seen = []
    counts = set()
    for p in range(2):
        ds = datasets.get_dataset(
            cfg, "train", batch_size=4, seed=0, process_index=p, process_count=2
        )
        batches = list(ds.epoch(4))
        counts.add(len(batches))
        for b in batches:
            assert b["x"].shape == (4, 8, 8, 3) and b["mask"].shape == (4,)
            seen.extend(b["label"][b["mask"]].tolist())
    assert counts == {5}  # ceil(37 / 8): the same on every host
    assert sorted(seen) == list(range(37))


def test_epoch_dequantization_repeats_differ(npz_path):
    path, _ = npz_path
    ds = datasets.get_dataset(
        _config(path=path), "test", batch_size=11, seed=0, uniform_dequantization=True
    )
    a0, a0b, a1 = (next(ds.epoch(repeat=r))["x"] for r in (0, 0, 1))
    np.testing.assert_array_equal(a0, a0b)
    assert not np.array_equal(a0, a1)


def test_resize_matches_jax_image_resize():
    import jax

    img = np.random.default_rng(0).random((20, 14, 3), dtype=np.float32)
    for size, method in [((8, 8), "bilinear"), ((31, 9), "bilinear"), ((10, 7), "bicubic")]:
        ref = jax.image.resize(img, (*size, 3), method, antialias=True)
        np.testing.assert_allclose(preprocess.resize(img, size, method), ref, atol=1e-5)


def test_celeba_preprocessing_shape():
    op = preprocess.preprocess_fn("celeba", DataConfig("celeba", image_size=64, num_channels=3))
    img = np.random.default_rng(0).integers(0, 256, (218, 178, 3), dtype=np.uint8)
    out = op(img)
    assert out.shape == (64, 64, 3) and 0 <= out.min() and out.max() <= 1


def test_folder_of_images(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (6, 12, 12, 3), dtype=np.uint8)
    for i, im in enumerate(imgs):
        image_io.save_png(tmp_path / "train" / f"{i:03d}.png", im)
    cfg = _config(dataset="folder", path=str(tmp_path), image_size=6)
    ds = datasets.get_dataset(cfg, "train", batch_size=6, seed=0)
    assert ds.num_examples == 6
    b = next(ds.epoch())
    assert b["x"].shape == (6, 6, 6, 3) and b["mask"].all()
    np.testing.assert_allclose(b["x"][2], preprocess.resize(imgs[2] / 255.0, (6, 6)), atol=1e-5)


def test_digits():
    cfg = _config(dataset="digits", image_size=8, num_channels=1)  # the native size
    ds = datasets.get_dataset(cfg, "train", batch_size=16, seed=0)
    b = ds.batch(0)
    assert ds.num_examples == 1500 and b["x"].shape == (16, 8, 8, 1)
    assert b["x"].min() >= 0 and b["x"].max() <= 1 and b["x"].max() > 0.9
    big = datasets.get_dataset(
        _config(dataset="digits", image_size=16, num_channels=1), "test", batch_size=4, seed=0
    )
    assert big.num_examples == 297 and big.batch(0)["x"].shape == (4, 16, 16, 1)
    # the typed config.data always carries the example shape (no implicit native size)
    with pytest.raises(ValueError, match="config.data.image_size"):
        DataConfig(dataset="digits", num_channels=1)


@pytest.mark.skipif(
    not os.path.exists(os.path.join(os.path.dirname(datasets.__file__), "toy_data.py")),
    reason="score_sde/data/toy_data.py (launcher) not present yet",
)
def test_toy():
    cfg = _config(dataset="toy/eight_gaussians", image_size=None, num_channels=None, dim=2)
    ds = datasets.get_dataset(cfg, "train", batch_size=64, seed=0)
    a, b = ds.batch(0)["x"], ds.batch(1)["x"]
    assert a.shape == (64, 2) and not np.array_equal(a, b)
    np.testing.assert_array_equal(
        a, datasets.get_dataset(cfg, "train", batch_size=64, seed=0).batch(0)["x"]
    )
    batches = list(ds.epoch(4096))
    assert sum(int(b["mask"].sum()) for b in batches) == ds.num_examples


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="valid names"):
        datasets.get_dataset(_config(dataset="mnist"), "train", batch_size=1, seed=0)
    with pytest.raises(ValueError, match="np.savez"):
        datasets.get_dataset(_config(path=str(tmp_path / "x.npz")), "train", batch_size=1, seed=0)
    with pytest.raises(ValueError, match="config.data.path"):
        datasets.get_dataset(_config(dataset="folder", path=None), "train", batch_size=1, seed=0)


def test_tfds_missing_dataset_says_how_to_prepare(tmp_path, capfd, caplog):
    pytest.importorskip("tensorflow_datasets")
    (tmp_path / "cifar10" / "3.0.2").mkdir(parents=True)  # a build that never finished
    cfg = _config(dataset="cifar10", image_size=32, data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="tfds build cifar10 --file_format=array_record"):
        datasets.get_dataset(cfg, "train", batch_size=1, seed=0)
    # TFDS's absl warning ("Variant folder ... has no dataset_info.json") stays off the terminal:
    # our one error line is all the operator reads
    out, err = capfd.readouterr()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "dataset_info.json" not in out + err + logged, (err, logged)


@pytest.mark.parametrize("name,size", [("cifar10", 32), ("celeba", 64)])
def test_tfds_mock_data(name, size, monkeypatch):
    """TFDS's own mock data through `tfds.data_source`, without TensorFlow.

    Mock examples are generated as decoded numpy arrays (TFDS's default decoding, Pillow).
    """
    tfds = pytest.importorskip("tensorflow_datasets")
    cfg = _config(dataset=name, image_size=size, random_flip=True, centered=True)
    with tfds.testing.mock_data(num_examples=10):
        ds = datasets.get_dataset(
            cfg, "train", batch_size=4, seed=0, process_index=1, process_count=2
        )
        b = ds.batch(2)
        assert ds.num_examples == 10
        assert b["x"].shape == (4, size, size, 3)
        if name == "cifar10":
            assert b["label"].shape == (4,)
        assert -1 <= b["x"].min() and b["x"].max() <= 1
        np.testing.assert_array_equal(b["x"], ds.batch(2)["x"])
        ev = list(datasets.get_dataset(cfg, "test", batch_size=4, seed=0).epoch())
        assert sum(int(e["mask"].sum()) for e in ev) == 10


def test_named_dataset_from_path(npz_path):
    path, x = npz_path
    cfg = _config(dataset="CIFAR10", path=path)
    ds = datasets.get_dataset(cfg, "test", batch_size=11, seed=0)
    np.testing.assert_allclose(next(ds.epoch())["x"], x[:11] / 255.0, atol=1e-6)


def test_tfrecords_path_is_read_as_the_path(npz_path):
    """The original CelebA-HQ / FFHQ configs name the prepared copy config.data.tfrecords_path."""
    path, x = npz_path
    ds = datasets.get_dataset(
        _config(dataset="CIFAR10", tfrecords_path=path), "test", batch_size=11, seed=0
    )
    np.testing.assert_allclose(next(ds.epoch())["x"], x[:11] / 255.0, atol=1e-6)
    # config.data.path, when set, wins
    cfg = _config(dataset="CIFAR10", path=path, tfrecords_path=path + ".absent")
    ds = datasets.get_dataset(cfg, "test", batch_size=11, seed=0)
    np.testing.assert_allclose(next(ds.epoch())["x"], x[:11] / 255.0, atol=1e-6)


def test_to_images_inverse_scales_and_clips():
    import jax

    x = np.array([-1.5, -1.0, 0.0, 0.5, 1.0, 2.0], np.float32)
    np.testing.assert_array_equal(
        preprocess.to_images(x, _config(centered=True)), [0.0, 0.0, 0.5, 0.75, 1.0, 1.0]
    )
    np.testing.assert_array_equal(
        preprocess.to_images(x, _config(centered=False)), [0.0, 0.0, 0.0, 0.5, 1.0, 1.0]
    )
    assert isinstance(preprocess.to_images(jax.numpy.asarray(x), _config()), jax.Array)


def test_process_dataset_is_this_process_share(npz_path):
    import jax

    path, _ = npz_path
    cfg = _config(path=path, uniform_dequantization=True)
    assert jax.process_count() == 1  # one process: its share is the whole global batch
    ds = datasets.get_process_dataset(cfg, "train", global_batch=6, seed=3, augment=False)
    ref = datasets.get_dataset(cfg, "train", batch_size=6, seed=3, augment=False)
    for step in (0, 4):
        np.testing.assert_array_equal(ds.indices(step), ref.indices(step))
        np.testing.assert_array_equal(ds.batch(step)["x"], ref.batch(step)["x"])


def test_prefetch_yields_the_same_batches(npz_path):
    path, _ = npz_path
    ds = datasets.get_dataset(_config(path=path, random_flip=True), "train", batch_size=4, seed=0)
    got = list(datasets.prefetch(ds, range(3, 9), buffer=2))
    assert len(got) == 6
    for step, b in zip(range(3, 9), got, strict=True):
        np.testing.assert_array_equal(b["x"], ds.batch(step)["x"])


def test_labels_are_matched_to_the_images_they_belong_to(tmp_path):
    """Labels of another length: an error when they are these images' (y_<split>, or a shared
    name next to shared images); a shared name next to x_<split> may be another split's."""
    x = np.zeros((5, 8, 8, 3), np.uint8)
    path = str(tmp_path / "d.npz")
    np.savez(path, x_train=x, x_test=x[:2], labels=np.arange(5))
    train = datasets.get_dataset(_config(path=path), "train", batch_size=5, seed=0)
    np.testing.assert_array_equal(np.sort(train.batch(0)["label"]), np.arange(5))
    test = datasets.get_dataset(_config(path=path), "test", batch_size=2, seed=0)
    assert "label" not in test.batch(0)  # as before: `labels` are the train split's
    np.savez(path, x=x, labels=np.arange(4))
    with pytest.raises(ValueError, match="array 'labels' of shape \\(4,\\) does not match"):
        datasets.get_dataset(_config(path=path), "train", batch_size=5, seed=0)
    np.savez(path, x_test=x, y_test=np.arange(4))
    with pytest.raises(ValueError, match="array 'y_test' of shape"):
        datasets.get_dataset(_config(path=path), "test", batch_size=5, seed=0)


def test_tfds_channels_are_checked_against_the_config(monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    cfg = _config(dataset="cifar10", image_size=32, num_channels=1)
    with tfds.testing.mock_data(num_examples=4):
        with pytest.raises(ValueError, match="TFDS 'cifar10' split 'train' holds 3-channel"):
            datasets.get_dataset(cfg, "train", batch_size=2, seed=0)
