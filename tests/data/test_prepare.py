"""`python -m score_sde.data.prepare`: the standard download formats -> the .npz the configs read.

Small archives are built here in the real formats (CIFAR-10's tar.gz of pickled batches with
bytes keys and R/G/B planes, SVHN's .mat files, an image folder with class subfolders); labels and
pixels must round-trip exactly, and a published config must read the result with the paper's
preprocessing through one flag (config.data.path).
"""

import io
import os
import pickle
import tarfile

import numpy as np
import pytest

from score_sde import config
from score_sde.data import datasets
from score_sde.store import image_io
from tests.helpers import REPO, cifar_archive, prepare

CIFAR_CONFIG = os.path.join(REPO, "configs", "vp", "cifar10_ddpmpp_continuous.py")


def test_cifar10_archive_round_trips_and_the_published_config_reads_it(tmp_path):
    x_train, y_train, x_test, y_test = cifar_archive(tmp_path / "cifar-10-python.tar.gz")
    out = tmp_path / "data" / "cifar10.npz"
    rc, stdout, err = prepare("cifar10", "--source", str(tmp_path / "cifar-10-python.tar.gz"),
                               "--out", str(out))  # fmt: skip
    assert rc == 0, err
    assert "--config.data.path=" in stdout
    with np.load(out) as f:
        np.testing.assert_array_equal(f["x_train"], x_train)
        np.testing.assert_array_equal(f["y_train"], y_train)
        np.testing.assert_array_equal(f["x_test"], x_test)
        np.testing.assert_array_equal(f["y_test"], y_test)
        assert f["x_train"].dtype == np.uint8 and f["y_train"].dtype == np.int32
    # the published config, one flag: the paper's preprocessing (CIFAR-10: centered to [-1, 1])
    cfg = config.load(CIFAR_CONFIG, {"data.path": str(out)})
    assert cfg.data.dataset == "CIFAR10" and cfg.data.centered
    test = datasets.get_dataset(cfg.data, "test", batch_size=4, seed=0)
    batch = next(iter(test.epoch(4)))  # ordered, no flip
    np.testing.assert_allclose(batch["x"], x_test.astype(np.float32) / 255.0 * 2 - 1, atol=1e-6)
    np.testing.assert_array_equal(batch["label"], y_test)
    train = datasets.get_dataset(cfg.data, "train", batch_size=15, seed=0)
    assert train.num_examples == 15
    x = train.batch(0)["x"]
    originals = x_train.astype(np.float32) / 255.0 * 2 - 1
    for row in x:  # every training example is a (possibly flipped) original
        assert any(np.allclose(row, o) or np.allclose(row, o[:, ::-1]) for o in originals)


def test_an_extracted_cifar10_directory_works_too(tmp_path):
    x_train, *_ = cifar_archive(tmp_path / "c.tar.gz", per_batch=2, n_test=2)
    with tarfile.open(tmp_path / "c.tar.gz") as tar:
        tar.extractall(tmp_path / "extracted", filter="data")
    out = tmp_path / "c.npz"
    rc, _, err = prepare("cifar10", "--source", str(tmp_path / "extracted"), "--out", str(out))
    assert rc == 0, err
    np.testing.assert_array_equal(np.load(out)["x_train"], x_train)


def test_svhn_mat_files_round_trip_with_ten_as_zero(tmp_path):
    from scipy import io as sio

    rng = np.random.default_rng(1)
    expected = {}
    for split, n in (("train", 5), ("test", 3)):
        images = rng.integers(0, 256, (n, 32, 32, 3), np.uint8)
        digits = np.array([10, 1, 2, 9, 10][:n])
        sio.savemat(tmp_path / f"{split}_32x32.mat",
                    {"X": images.transpose(1, 2, 3, 0), "y": digits[:, None]})  # fmt: skip
        expected[split] = (images, digits % 10)
    out = tmp_path / "svhn.npz"
    rc, _, err = prepare("svhn", "--source", str(tmp_path), "--out", str(out))
    assert rc == 0, err
    with np.load(out) as f:
        for split, (images, labels) in expected.items():
            np.testing.assert_array_equal(f[f"x_{split}"], images)
            np.testing.assert_array_equal(f[f"y_{split}"], labels)


def test_image_folder_with_class_subfolders(tmp_path):
    rng = np.random.default_rng(2)
    kept = {}
    for cls in ("cats", "dogs"):
        for i in range(3):
            size = (12, 16) if i == 0 else (8, 8)  # one non-square image: cropped, then resized
            image = rng.integers(0, 256, (*size, 3), np.uint8)
            image_io.save_png(str(tmp_path / "images" / cls / f"{i}.png"), image)
            kept[(cls, i)] = image
    out = tmp_path / "faces.npz"
    rc, _, err = prepare("folder", "--source", str(tmp_path / "images"), "--out", str(out),
                          "--size", "8", "--test_fraction", "0.34")  # fmt: skip
    assert rc == 0, err
    with np.load(out) as f:
        x = np.concatenate([f["x_train"], f["x_test"]])
        y = np.concatenate([f["y_train"], f["y_test"]])
        assert x.shape == (6, 8, 8, 3) and len(f["x_test"]) == 2
    assert sorted(y.tolist()) == [0, 0, 0, 1, 1, 1]  # cats, dogs
    square = {k: v for k, v in kept.items() if k[1] != 0}  # 8x8 sources are kept exactly
    for image in square.values():
        assert any(np.array_equal(image, row) for row in x)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["cifar10", "--source", "{tmp}/nothing.tar.gz"], "does not exist"),
        (["cifar10", "--source", "{tmp}/junk.bin"], "is not the CIFAR-10 python archive"),
        (["cifar10", "--source", "{tmp}/partial.tar.gz"], "lacks data_batch_2"),
        (["svhn", "--source", "{tmp}"], "train_32x32.mat not found"),
        (["folder", "--source", "{tmp}"], "needs --size"),
        (["cifar10", "--source", "{tmp}/junk.bin", "--out", "{tmp}/x.h5"], "must end with .npz"),
    ],
)
def test_bad_sources_give_one_line_and_exit_2(args, needle, tmp_path):
    (tmp_path / "junk.bin").write_bytes(os.urandom(1000))
    with tarfile.open(tmp_path / "partial.tar.gz", "w:gz") as tar:
        data = pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [0]})
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    argv = [a.format(tmp=tmp_path) for a in args]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "out.npz")]
    rc, _, err = prepare(*argv)
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert needle in lines[0] and "Traceback" not in err
    assert not (tmp_path / "out.npz").exists()


def test_sources_and_output_on_gs_give_the_local_files_bytes(tmp_path, bucket):
    """The archive, the extracted directory and a class folder read from a bucket, written to
    it: the same .npz bytes as from and to a local disk."""
    import fsspec

    gcs = fsspec.filesystem("gs")
    (tmp_path / "src").mkdir()
    cifar_archive(tmp_path / "src" / "c.tar.gz", per_batch=2, n_test=2)
    with tarfile.open(tmp_path / "src" / "c.tar.gz") as tar:
        tar.extractall(tmp_path / "src" / "extracted", filter="data")
    rng = np.random.default_rng(3)
    for cls in ("cats", "dogs"):
        for i in range(2):
            image = rng.integers(0, 256, (8, 8, 3), np.uint8)
            image_io.save_png(str(tmp_path / "src" / "images" / cls / f"{i}.png"), image)
    gcs.put(f"{tmp_path}/src/", f"{bucket}/src/", recursive=True)
    for args in (
        ["cifar10", "--source", "{root}/src/c.tar.gz"],
        ["cifar10", "--source", "{root}/src/extracted"],
        ["folder", "--source", "{root}/src/images", "--size", "8"],
    ):
        outs = []
        for root in (str(tmp_path), bucket):
            out = f"{root}/out/{args[0]}-{len(outs)}.npz"
            rc, _, err = prepare(*[a.format(root=root) for a in args], "--out", out)
            assert rc == 0, err
            outs.append(gcs.cat(out) if root == bucket else open(out, "rb").read())
        assert outs[0] == outs[1], args
