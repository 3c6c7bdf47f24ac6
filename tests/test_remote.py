"""Work directories, data and statistics on a remote file system (`gs://`), through score_sde.store.fs.

The remote is fsspec's in-memory file system registered as the `gcs` implementation that
etils.epath opens for gs:// paths (no network, no credentials); every test also runs on a local
directory and the two must hold the same bytes. Orbax's checkpoints on gs:// go through
TensorStore's own GCS driver, which no in-process fake reaches: they are not covered here.
"""

from __future__ import annotations

import io
import json

import fsspec
import numpy as np
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from score_sde.config import DataConfig, read_section
from score_sde.data import datasets
from score_sde.evaluation import fid
from score_sde.run import rounds
from score_sde.store import fs, image_io
from score_sde.store import workdir as wd
from score_sde.store.metrics_log import MetricsLogger
from tests.tb_events import read_events


class FakeGCS(MemoryFileSystem):
    protocol = ("gs", "gcs")
    store: dict = {}
    pseudo_dirs = [""]

    def __init__(self, *args, **kwargs):  # gcsfs options (finalize_on_close, ...) are ignored
        super().__init__()


@pytest.fixture(params=["local", "gs"])
def root(request, tmp_path):
    if request.param == "local":
        yield str(tmp_path)
        return
    old = fsspec.registry.get("gcs")
    fsspec.register_implementation("gcs", FakeGCS, clobber=True)
    FakeGCS.store.clear()
    yield "gs://bucket/run"
    FakeGCS.store.clear()
    if old is not None:
        fsspec.register_implementation("gcs", old, clobber=True)


def test_workdir_json_and_lock(root):
    out = wd.prepare(root)
    assert out == root if fs.is_remote(root) else out.endswith("run") or out == root
    wd.write_json(f"{out}/eval/3/results.json", {"fid": 1.5})
    assert json.loads(fs.path(f"{out}/eval/3/results.json").read_text()) == {"fid": 1.5}
    with wd.RunLock(out) as lock:  # remote: no lock file (no flock there), stated on stderr
        assert fs.path(lock.path).exists() != fs.is_remote(root)
    assert [p.name for p in fs.path(out).iterdir()] == ["eval"]


def test_rounds_resume(root):
    calls = []

    def compute(i):
        calls.append(i)
        return {"x": np.full(3, i, np.float32)}

    r = rounds.Rounds(f"{root}/rounds", "pc", 4, desc="test")
    with r:
        first = [r.get(i, lambda i=i: compute(i)) for i in range(2)]  # then "killed"
    again = rounds.Rounds(f"{root}/rounds", "pc", 4, desc="test")
    out = dict(again.items(compute))
    assert calls == [0, 1, 2, 3] and again.resumed == 2
    np.testing.assert_array_equal(out[1]["x"], first[1]["x"])
    assert sorted(p.name for p in fs.path(f"{root}/rounds").iterdir()) == [
        f"pc_{i:05d}.npz" for i in range(4)
    ]


def test_metrics_and_tensorboard(root):
    with MetricsLogger(root, stream=io.StringIO()) as log:
        log.write(1, {"training_loss": 0.5})
        log.write(2, {"training_loss": 0.25})
        log.image(2, "samples", np.zeros((4, 4, 3), np.uint8))
    with MetricsLogger(root, stream=io.StringIO()) as log:  # a resumed run appends
        log.write(3, {"eval_loss": 0.125})
    lines = fs.path(f"{root}/metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3]
    events = []
    for f in sorted(fs.path(f"{root}/tensorboard").iterdir()):
        events += read_events(f)
    scalars = {(s, t): v for s, vals in events for t, v in vals.items() if isinstance(v, float)}
    assert scalars == {
        (1, "training_loss"): 0.5,
        (2, "training_loss"): 0.25,
        (3, "eval_loss"): 0.125,
    }
    assert any("samples" in vals for _, vals in events)


def test_samples_stats_and_npz_data(root):
    images = np.random.default_rng(0).integers(0, 256, (5, 4, 4, 3), dtype=np.uint8)
    image_io.save_samples(f"{root}/samples/s", images)
    assert fs.load_npz(f"{root}/samples/s.npz")["samples"].tolist() == images.tolist()
    png = fs.path(f"{root}/samples/s.png").read_bytes()
    assert image_io.decode_image(png).shape[-1] == 3

    feats = np.random.default_rng(1).normal(size=(10, 2048))
    fid.save_statistics(f"{root}/stats.npz", feats)
    stats = fid.load_statistics(f"{root}/stats.npz")
    np.testing.assert_allclose(stats["mu"], feats.mean(0), rtol=1e-6)

    fs.save_npz(f"{root}/data.npz", x_train=images, x_test=images[:2])
    data = read_section(
        "data",
        {"dataset": "npz", "path": f"{root}/data.npz", "image_size": 4, "num_channels": 3},
        DataConfig,
    )
    ds = datasets.get_dataset(data, "train", batch_size=5, seed=0)
    assert ds.num_examples == 5


def test_image_folder(root):
    images = np.random.default_rng(2).integers(0, 256, (3, 4, 4, 3), dtype=np.uint8)
    for i, im in enumerate(images):
        image_io.save_png(f"{root}/imgs/train/sub/{i}.png", im)
    data = read_section(
        "data",
        {"dataset": "folder", "path": f"{root}/imgs", "image_size": 4, "num_channels": 3},
        DataConfig,
    )
    ds = datasets.get_dataset(data, "train", batch_size=3, seed=0, augment=False)
    assert ds.num_examples == 3
    got = np.sort(np.round(np.asarray(ds.batch(0)["x"]) * 255).reshape(3, -1), axis=0)
    np.testing.assert_array_equal(got, np.sort(images.reshape(3, -1), axis=0))
