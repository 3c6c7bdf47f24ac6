"""Weights & Biases (config.logging.wandb, score_sde.store.wandb_log), offline: a tiny toy run
trained through the command line's config path writes an offline W&B run into its work directory;
what that run recorded is read back from its transaction log (run-<id>.wandb) and compared with
metrics.jsonl. A resumed run continues the same W&B run; W&B off (the default) never imports wandb;
logging never enters a run's identity.

No test reaches the network: offline mode, and W&B's server address points at a closed local port.
"""

import glob
import io
import json
import os
import struct
import sys
import time

import pytest

from score_sde import config as config_lib
from score_sde.run import identity, modes, sample_files
from score_sde.store import metrics_log, wandb_log

# The tiny toy run: a training-loss record every step, an eval loss and a sample picture at 2.
FLAGS = [
    "--config=configs/toy/gmm.py",
    "--config.model.nf=16",
    "--config.model.num_layers=1",
    "--config.model.num_scales=20",
    "--config.training.batch_size=16",
    "--config.training.n_jitted_steps=1",
    "--config.training.log_freq=1",
    "--config.training.eval_freq=2",
    "--config.training.snapshot_freq=2",
    "--config.training.snapshot_freq_for_preemption=2",
    "--config.training.eval_after_training=False",
    "--config.sampling.batch_size=16",
]
WANDB = ["--config.logging.wandb=proj", "--config.logging.wandb_mode=offline"]


def _config(*flags: str) -> config_lib.Config:
    """The typed config of a command line, as the launcher reads it."""
    path, overrides, rest = config_lib.split_argv([*FLAGS, *flags], "configs/toy/gmm.py")
    assert not rest
    return config_lib.load(path, overrides)


def _train(workdir, *flags: str) -> str:
    out = io.StringIO()
    modes.run("train", _config(*flags), str(workdir), stream=out)
    return out.getvalue()


def _offline_env(mp: pytest.MonkeyPatch, root) -> None:
    """W&B offline and silent, its own files under `root`, its server a closed local port."""
    for name in ("WANDB_API_KEY", "WANDB_ENTITY", "WANDB_PROJECT", "WANDB_RUN_ID", "WANDB_RESUME"):
        mp.delenv(name, raising=False)
    mp.setenv("WANDB_MODE", "offline")
    mp.setenv("WANDB_SILENT", "true")
    mp.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # discard port: nothing answers
    for name in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        os.makedirs(root / name, exist_ok=True)
        mp.setenv(name, str(root / name))


def _records(path: str):
    """The protobuf Records of a W&B transaction log (run-<id>.wandb): a 7-byte header (':W&B',
    magic 0xBEE1, version 0), then LevelDB-log chunks (crc32 4, length 2, type 1: full, first,
    middle, last) in 32 KiB blocks whose tails under 7 bytes are padding."""
    from wandb.proto import wandb_internal_pb2

    data = open(path, "rb").read()
    assert data[:4] == b":W&B" and struct.unpack("<HB", data[4:7]) == (0xBEE1, 0), data[:7]
    pos, chunk = 7, b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:  # zeroed tail of a block
            pos += left
            continue
        chunk += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            chunk = b""
            yield record


def _finished_records(run_dir: str) -> list:
    """The records of the offline run in `run_dir`, once its exit record is written: wandb-core
    writes the log in the background, and `finish` may return before the last records are on
    disk."""
    (log,) = glob.glob(os.path.join(run_dir, "run-*.wandb"))
    deadline = time.monotonic() + 60
    while True:
        records = list(_records(log)) if os.path.getsize(log) >= 7 else []
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            return records
        assert time.monotonic() < deadline, f"{log}: no exit record after 60 s"
        time.sleep(0.2)


def _read_offline_run(run_dir: str) -> dict:
    """What an offline run recorded: its id, project, name, config, history rows, summary,
    exit code."""
    out: dict = {"history": [], "summary": {}}
    for record in _finished_records(run_dir):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            out.update(id=r.run_id, project=r.project, name=r.display_name)
            out["config"] = {u.key: json.loads(u.value_json) for u in r.config.update}
        elif kind == "history":
            row = {
                ".".join(i.nested_key) or i.key: json.loads(i.value_json)
                for i in record.history.item
            }
            out["history"].append(row)
        elif kind == "summary":
            for u in record.summary.update:
                out["summary"][".".join(u.nested_key) or u.key] = json.loads(u.value_json)
        elif kind == "exit":
            out["exit_code"] = record.exit.exit_code
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One work directory: 2 steps with W&B offline, then resumed to 4 with the same flags."""
    root = tmp_path_factory.mktemp("wandb")
    workdir = root / "toy_run"
    with pytest.MonkeyPatch.context() as mp:
        _offline_env(mp, root)
        first = _train(workdir, *WANDB, "--config.training.n_iters=2")
        second = _train(workdir, *WANDB, "--config.training.n_iters=4")
    runs = sorted(glob.glob(str(workdir / "wandb" / "offline-run-*")))
    return workdir, root, runs, first, second


def test_offline_run_records_the_config_and_the_metrics(run):
    workdir, root, runs, _, _ = run
    assert len(runs) == 2, runs  # one offline run directory per start
    first = _read_offline_run(runs[0])
    assert first["project"] == "proj" and first["name"] == "toy_run"  # the workdir's basename
    assert first["exit_code"] == 0
    written = json.loads((workdir / "config.json").read_text())  # the resumed start's config
    for section in ("model", "data", "sampling", "optim"):
        assert first["config"][section] == written[section], section
    assert first["config"]["training"] == {**written["training"], "n_iters": 2}
    assert first["config"]["training"]["n_iters"] == 2 and first["config"]["model"]["nf"] == 16
    assert first["config"]["logging"] == {
        "wandb": "proj",
        "wandb_name": "",
        "wandb_mode": "offline",
        "wandb_entity": "",
    }
    rows = metrics_log.read(str(workdir))
    losses = [(r["step"], r["training_loss"]) for r in rows if "training_loss" in r]
    both = [_read_offline_run(d) for d in runs]
    logged = [
        (h["_step"], h["training_loss"]) for b in both for h in b["history"] if "training_loss" in h
    ]
    assert logged == losses and [s for s, _ in losses] == [1, 2, 3, 4]
    assert both[1]["summary"]["training_loss"] == losses[-1][1]  # the summary: the last value
    assert both[1]["config"]["training"]["n_iters"] == 4
    # the eval loss and the sample picture of the snapshot at step 2
    evals = [r["eval_loss"] for r in rows if "eval_loss" in r]
    assert [h["eval_loss"] for h in first["history"] if "eval_loss" in h] == evals[:1]
    assert first["summary"]["samples._type"] == "image-file"
    assert glob.glob(os.path.join(runs[0], "files", "media", "images", "samples_2_*.png"))
    # W&B's own files stay under the work directory and the test's WANDB_* directories
    assert not os.listdir(root / "WANDB_DIR")


def test_a_resumed_run_continues_the_same_wandb_run(run):
    workdir, _, runs, first_out, second_out = run
    rid = json.loads((workdir / identity.RUN_FILE).read_text())["run_id"]
    ids = [_read_offline_run(d)["id"] for d in runs]
    assert ids == [rid, rid] and all(d.endswith("-" + rid) for d in runs)
    assert "resumed from step 2" in second_out
    assert "changed field: logging" not in second_out
    assert "resumed with a changed field: training.n_iters: 2 -> 4" in second_out


def test_logging_is_not_part_of_a_run_identity():
    off, on = _config(), _config(*WANDB)
    assert identity.of(off, "0000abcd") == identity.of(on, "0000abcd")
    assert sample_files.provenance(off, 4, "pc", 20) == sample_files.provenance(on, 4, "pc", 20)
    before, after = off.to_dict(), on.to_dict()
    assert identity.changed_fields(before, after) == []
    before.pop("logging")  # a config.json written before config.logging existed
    assert identity.changed_fields(before, after) == []


def test_wandb_off_never_imports_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` would raise ImportError
    _train(tmp_path / "run", "--config.training.n_iters=2")
    assert sys.modules["wandb"] is None
    assert not (tmp_path / "run" / "wandb").exists()
    written = json.loads((tmp_path / "run" / "config.json").read_text())
    assert written["logging"]["wandb"] == ""


def test_a_missing_wandb_package_fails_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ValueError) as e:
        _train(tmp_path / "run", *WANDB, "--config.training.n_iters=2")
    assert 'pip install -e ".[wandb]"' in str(e.value)
    assert "config.logging.wandb ('proj')" in str(e.value)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "flag, needle",
    [
        (
            "--config.logging.wandb_mode=cloud",
            "config.logging.wandb_mode ('cloud') must be one of 'online', 'offline'",
        ),
        ("--config.logging.wandb_mode=Offline", "config.logging.wandb_mode ('Offline')"),
    ],
)
def test_a_bad_wandb_mode_names_the_field_and_the_choices(flag, needle):
    with pytest.raises(ValueError) as e:
        _config("--config.logging.wandb=proj", flag)
    assert needle in str(e.value)


def test_a_run_name_without_a_project_is_refused():
    with pytest.raises(ValueError) as e:
        _config("--config.logging.wandb_name=first")
    assert "config.logging.wandb_name ('first')" in str(e.value)
    assert "set config.logging.wandb" in str(e.value)


def test_every_shipped_config_takes_the_wandb_flags():
    overrides = {"logging.wandb": "proj", "logging.wandb_mode": "offline"}
    for name in config_lib.shipped_configs():
        cfg = config_lib.load(name, overrides)
        assert (cfg.logging.wandb, cfg.logging.wandb_mode) == ("proj", "offline"), name


def test_a_bucket_work_directory_keeps_wandb_files_on_a_local_disk(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_DIR", raising=False)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    where, note = wandb_log.local_dir("gs://bucket/runs/toy", "0000abcd")
    assert where == str(tmp_path / "score_sde-wandb" / "0000abcd") and os.path.isdir(where)
    assert (
        note == f"W&B: gs://bucket/runs/toy is not a local disk; its W&B files go to {where}/wandb"
    )
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "mine"))
    assert wandb_log.local_dir("gs://bucket/runs/toy", "0000abcd")[0] == str(tmp_path / "mine")
    assert wandb_log.local_dir(str(tmp_path), "0000abcd") == (str(tmp_path), None)


def test_a_run_that_fails_finishes_its_wandb_run_as_failed(tmp_path, monkeypatch):
    _offline_env(monkeypatch, tmp_path)
    with pytest.raises(RuntimeError, match="diverged"):
        with metrics_log.MetricsLogger(str(tmp_path), stream=io.StringIO()) as log:
            log.start_wandb(
                project="proj",
                name="direct",
                mode="offline",
                entity="",
                run_id="0000abcd",
                config={"seed": 0},
            )
            log.write(3, {"training_loss": 0.5})
            raise RuntimeError("diverged")
    (run_dir,) = glob.glob(str(tmp_path / "wandb" / "offline-run-*-0000abcd"))
    recorded = _read_offline_run(run_dir)
    assert recorded["exit_code"] == 1
    assert recorded["name"] == "direct" and recorded["config"]["seed"] == 0
    assert recorded["summary"]["training_loss"] == 0.5
