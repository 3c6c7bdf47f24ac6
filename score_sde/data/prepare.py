"""Datasets from their standard download formats to the `.npz` files the configs read, without
TensorFlow.

    python -m score_sde.data.prepare cifar10 --source cifar-10-python.tar.gz --out data/cifar10.npz
    python -m score_sde.data.prepare svhn --source DIR --out data/svhn.npz    # train/test_32x32.mat
    python -m score_sde.data.prepare folder --source DIR --out data/faces.npz --size 64

then train on it with the published config and one flag:

    python launch.py --config configs/vp/cifar10_ddpmpp_continuous.py --workdir runs/c10 \
        --config.data.path=data/cifar10.npz

The file holds uint8 images x_train / x_test [N, H, W, C] and int32 labels y_train / y_test
(where the source has them); the configs apply the paper's preprocessing to it unchanged (the
dataset name stays, e.g. CIFAR10: scaling to [0, 1], random flips, centering). Sources:
- cifar10: the python version of CIFAR-10 (https://www.cs.toronto.edu/~kriz/cifar.html), a
  .tar.gz of pickled batches `data_batch_1..5`, `test_batch` ([10000, 3072] uint8 rows of R, G, B
  planes, 'labels'); also an extracted `cifar-10-batches-py` directory.
- svhn: the cropped-digits .mat files of SVHN (http://ufldl.stanford.edu/housenumbers/),
  `train_32x32.mat` / `test_32x32.mat` (X [32, 32, 3, N], y [N, 1] with 10 for the digit 0).
- folder: a directory of images (PNG without dependencies, others with Pillow), with optional
  `train/` and `test/` subfolders; each image center-cropped to a square and resized to `--size`
  (antialiased, as the preprocess module does); subfolder names of a class-per-folder layout become
  labels. `--test_fraction` splits off a test set when there is no `test/` folder.
"""

from __future__ import annotations

import argparse
import os
import pickle
import tarfile

import numpy as np

from score_sde.data import sources
from score_sde.store import fs, image_io, progress

SOURCES = ("cifar10", "svhn", "folder")


def _cifar_batch(data: bytes, what: str) -> tuple[np.ndarray, np.ndarray]:
    """One pickled CIFAR-10 batch -> (images uint8 [N, 32, 32, 3], labels int32 [N])."""
    try:
        batch = pickle.loads(data, encoding="bytes")
        rows, labels = batch[b"data"], batch[b"labels"]
    except Exception as e:  # any unreadable batch: one message
        raise ValueError(
            f"{what} is not a CIFAR-10 python batch ({type(e).__name__}: {e})"
        ) from None
    rows = np.asarray(rows, np.uint8)
    if rows.ndim != 2 or rows.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{what}: expected data [N, 3072], got {rows.shape}")
    images = rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # R, G, B planes -> HWC
    return np.ascontiguousarray(images), np.asarray(labels, np.int32)


def read_cifar10(source: str) -> dict[str, np.ndarray]:
    """{'x_train' [50000, 32, 32, 3], 'y_train', 'x_test' [10000, ...], 'y_test'} of the python
    CIFAR-10 archive (or its extracted directory)."""
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    found: dict[str, bytes] = {}
    if fs.path(source).is_dir():
        for f in fs.files_under(source):
            if os.path.basename(f) in names:
                found[os.path.basename(f)] = fs.path(f).read_bytes()
    else:
        try:
            with fs.path(source).open("rb") as fh, tarfile.open(fileobj=fh) as tar:
                for member in tar.getmembers():
                    base = os.path.basename(member.name)
                    if member.isfile() and base in names:
                        found[base] = tar.extractfile(member).read()
        except (tarfile.TarError, OSError) as e:
            raise ValueError(
                f"--source {source} is not the CIFAR-10 python archive ({e}); download "
                "cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html"
            ) from None
    missing = [n for n in names if n not in found]
    if missing:
        raise ValueError(
            f"--source {source} lacks {', '.join(missing)}: expected the CIFAR-10 python version "
            "(cifar-10-python.tar.gz with cifar-10-batches-py/data_batch_1..5 and test_batch)"
        )
    train = [_cifar_batch(found[n], f"{source}:{n}") for n in names[:5]]
    x_test, y_test = _cifar_batch(found["test_batch"], f"{source}:test_batch")
    return {
        "x_train": np.concatenate([x for x, _ in train]),
        "y_train": np.concatenate([y for _, y in train]),
        "x_test": x_test,
        "y_test": y_test,
    }


def read_svhn(source: str) -> dict[str, np.ndarray]:
    """SVHN's cropped digits from `train_32x32.mat` and `test_32x32.mat` in `source` (a directory
    or one of the files): labels 0..9 (the files' 10 is the digit 0, as in TFDS)."""
    from scipy import io as sio

    directory = source if fs.path(source).is_dir() else os.path.dirname(source)
    out = {}
    for split in ("train", "test"):
        path = os.path.join(directory, f"{split}_32x32.mat")
        if not fs.path(path).is_file():
            raise ValueError(
                f"{path} not found: --source must be the directory (or a file) of SVHN's "
                "train_32x32.mat and test_32x32.mat"
            )
        try:
            with fs.path(path).open("rb") as fh:
                mat = sio.loadmat(fh)
            x, y = mat["X"], mat["y"]
        except Exception as e:
            raise ValueError(f"{path} is not an SVHN .mat file ({type(e).__name__}: {e})") from None
        if x.ndim != 4 or x.shape[:3] != (32, 32, 3):
            raise ValueError(f"{path}: expected X [32, 32, 3, N], got {x.shape}")
        out[f"x_{split}"] = np.ascontiguousarray(np.transpose(x, (3, 0, 1, 2)).astype(np.uint8))
        out[f"y_{split}"] = (np.asarray(y).reshape(-1) % 10).astype(np.int32)
    return out


def _load_folder(files: list[str], root: str, size: int, classes: list[str], what: str):
    from score_sde.data import preprocess

    images, labels = [], []
    for path in progress.wrap(files, f"reading {what}", "img", enabled=len(files) >= 100):
        try:
            image = image_io.read_image(path)
        except (ValueError, OSError) as e:
            raise ValueError(
                f"{path}: cannot be decoded ({e}); remove or replace the file"
            ) from None
        if image.shape[-1] == 4:
            image = image[..., :3]
        square = preprocess.crop_resize(image.astype(np.float32) / 255.0, size, "bicubic")
        images.append(np.round(square * 255.0).astype(np.uint8))
        if classes:
            labels.append(classes.index(path[len(root.rstrip("/")) + 1 :].split("/")[0]))
    return np.stack(images), (np.asarray(labels, np.int32) if classes else None)


def read_folder(source: str, size: int, test_fraction: float = 0.0, seed: int = 0):
    """Images of a directory (train/ and test/ subfolders if present), square-cropped and
    resized to `size`; class-per-subfolder layouts give labels."""
    source = os.fspath(fs.path(source))
    if not fs.path(source).is_dir():
        raise ValueError(f"--source {source} is not a directory of images")
    splits = {s: os.path.join(source, s) for s in ("train", "test")}
    roots = {s: r for s, r in splits.items() if fs.path(r).is_dir()} or {"train": source}
    out = {}
    for split, root in roots.items():
        files = sources.images_under(root)
        if not files:
            raise ValueError(f"no images under {root}")
        subdirs = sorted(p.name for p in fs.path(root).iterdir() if p.is_dir())
        top_level = [f for f in files if os.path.dirname(f) == root]
        classes = subdirs if subdirs and not top_level else []
        out[f"x_{split}"], labels = _load_folder(files, root, size, classes, split)
        if labels is not None:
            out[f"y_{split}"] = labels
    if "x_test" not in out and test_fraction > 0:
        n = len(out["x_train"])
        order = np.random.default_rng(seed).permutation(n)
        cut = n - max(1, int(round(n * test_fraction)))
        for k in [k for k in list(out) if k.endswith("_train")]:
            v = out.pop(k)
            out[k] = v[order[:cut]]
            out[k.replace("_train", "_test")] = v[order[cut:]]
    return out


def write(out_path: str, arrays: dict[str, np.ndarray]) -> None:
    """Writes the arrays as an uncompressed .npz, atomically (a local path or gs://: fs)."""
    fs.save_npz(out_path, **arrays)


def main(argv=None) -> None:
    from score_sde.config import fail

    parser = argparse.ArgumentParser(
        prog="python -m score_sde.data.prepare", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("dataset", choices=SOURCES)
    parser.add_argument("--source", required=True, help="the downloaded archive, file or folder")
    parser.add_argument("--out", required=True, help="the .npz to write")
    parser.add_argument("--size", type=int, default=0, help="folder: square image size")
    parser.add_argument("--test_fraction", type=float, default=0.0, help="folder: test split")
    args = parser.parse_args(argv)

    if not fs.path(args.source).exists():
        fail(f"--source {args.source} does not exist")
    if not args.out.endswith(".npz"):
        fail(f"--out {args.out} must end with .npz (the format config.data.path reads)")
    try:
        if args.dataset == "cifar10":
            arrays = read_cifar10(args.source)
        elif args.dataset == "svhn":
            arrays = read_svhn(args.source)
        else:
            if args.size <= 0:
                fail("folder needs --size, the square image size (e.g. --size=64)")
            arrays = read_folder(args.source, args.size, args.test_fraction)
    except ValueError as e:
        fail(str(e))
    try:
        write(args.out, arrays)
    except OSError as e:  # full disk, quota, read-only or vanished directory
        reason = fs.storage_failure(e)
        if reason is None:
            raise
        need = sum(v.nbytes for v in arrays.values())
        free = fs.free_space(args.out)
        room = "" if free is None else f", {fs.size_text(free)} free there"
        fail(
            f"cannot write --out {args.out} ({reason}): it needs {fs.size_text(need)}{room}. "
            "Make room (or choose another --out) and rerun; nothing was written"
        )
    shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in arrays.items())
    print(f"wrote {args.out}: {shapes}")
    print(
        f"train with: python launch.py --config <the dataset's config> --workdir <dir> "
        f"--config.data.path={args.out}"
    )


if __name__ == "__main__":
    main()
