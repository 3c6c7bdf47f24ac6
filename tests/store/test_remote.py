"""Work directories, data and statistics on a remote file system (`gs://`), through score_sde.store.fs.

The remote is a real GCS server on 127.0.0.1 (the `bucket` fixture: fake-gcs-server, tests/gcs.py)
reached through gcsfs as on a pod; every test also runs on a local directory and the two must hold
the same bytes. Training, checkpoints and their guarantees on gs:// are in test_gcs_runs.py.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from score_sde.config import DataConfig, read_section
from score_sde.data import datasets
from score_sde.evaluation import fid
from score_sde.run import rounds
from score_sde.store import fs, image_io, metrics_log
from score_sde.store import workdir as wd
from score_sde.store.metrics_log import MetricsLogger
from tests.tb_events import read_events


@pytest.fixture(params=["local", "gs"])
def root(request, tmp_path):
    if request.param == "local":
        return str(tmp_path)
    return request.getfixturevalue("bucket") + "/run"


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
    assert [r["step"] for r in metrics_log.read(root)] == [1, 2, 3]
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


def test_two_writers_of_one_log_lose_no_row(root, monkeypatch):
    """A training and an eval job logging to one work directory at once: every row of both is
    read back (on an object store each writer has its own objects: no read-modify-write), in
    time order, and so are the TensorBoard scalars."""
    monkeypatch.setattr(metrics_log, "PART_ROWS", 3)  # a writer's rows over several objects
    train = MetricsLogger(root, stream=io.StringIO())
    evaluation = MetricsLogger(root, stream=io.StringIO())
    for step in range(1, 9):
        train.write(step, {"training_loss": 1.0 / step})
        if step % 2 == 0:
            evaluation.write(step, {"bpd": float(step)}, prefix="eval/")
    train.close()
    evaluation.close()
    rows = metrics_log.read(root)
    assert [r["step"] for r in rows if "training_loss" in r] == list(range(1, 9))
    assert [r["step"] for r in rows if "eval/bpd" in r] == [2, 4, 6, 8]
    assert [r["time"] for r in rows] == sorted(r["time"] for r in rows)
    events = []
    for f in sorted(fs.path(f"{root}/tensorboard").iterdir()):
        events += read_events(f)
    tags = sorted((s, t) for s, vals in events for t in vals if t != "samples")
    assert tags == sorted(
        [(s, "training_loss") for s in range(1, 9)] + [(s, "eval/bpd") for s in (2, 4, 6, 8)]
    )


def test_fsspec_read_ahead_errors_are_left_to_the_reader():
    """fsspec's prefetcher logs a failed fetch's traceback at ERROR and then raises it to the
    reader; the reader says it in one line, so the log is off (an eval beside a training on gs://
    would print a traceback whenever a rolled checkpoint vanished mid-read)."""
    import logging

    from score_sde.store import fs  # noqa: F401 (sets the level at import)

    assert not logging.getLogger("fsspec.prefetcher").isEnabledFor(logging.ERROR)
