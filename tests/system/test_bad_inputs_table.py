"""Bad inputs through the real `launch.py`, one row per case: labels that do not fit the model,
data files of the wrong kind, config files that are not config modules, degenerate values and
work directories that cannot be one. Every row exits with status 2 and one `error:` line naming
the file or field and the fix, no traceback, and leaves the work directory and the current
directory as they were; a work directory with spaces and non-ASCII letters simply works.

Where each class is checked (one mechanism per class, not one patch per case):
- labels: `_Source.check_labels` (data/sources.py), given the model's num_classes by the modes
  that train on labels (train, train_classifier) through `datasets.get_dataset(num_classes=)`;
- data files: the source's `check_against` (shape, dtype, values of every split opened) and the
  .npz reader (`_not_npz` says what the file is instead);
- config files: `config.files.load_file` (anything the file raises or exits with, and a
  get_config() that needs arguments);
- values: the `__post_init__` checks of each config section (config/sections.py);
- work directories: the write probe of the work directory before anything is written.
"""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from score_sde.store import image_io
from tests.helpers import ROOT, TINY, assert_refused, file_tree

COND = ["--config=digits/conditional", "--config.model.nf=8", "--config.data.dataset=npz"]
DIGITS = ["--config=digits/ddpmpp", "--config.model.nf=8"]
GMM = ["--config=toy/gmm"]
X = np.random.default_rng(0).integers(0, 256, (20, 8, 8, 1), np.uint8)  # 8x8 grayscale
LABELS = np.arange(20) % 10

# (id, flags, what the one error line must contain); {data}: the files built by `data`
CASES = [
    # labels that do not fit the model (class-conditional: config.model.num_classes = 10)
    ("labels too large", [*COND, "--config.data.path={data}/large.npz"], ["array 'y_train' holds labels in [5, 14]", "config.model.num_classes (10) takes 0..9", "--config.model.num_classes=15"]),
    ("labels negative", [*COND, "--config.data.path={data}/negative.npz"], ["labels in [-3, 6]", "relabel them to 0..9"]),
    ("labels fractional", [*COND, "--config.data.path={data}/fractional.npz"], ["array 'y_train' holds 20 labels that are not whole numbers (e.g. 0.5)", "save integer labels 0..9"]),
    ("labels as text", [*COND, "--config.data.path={data}/text_labels.npz"], ["array 'y_train' holds <U3 labels (e.g. np.str_('cat'))", "np.unique(y, return_inverse=True)"]),
    ("labels one-hot", [*COND, "--config.data.path={data}/one_hot.npz"], ["array 'y_train' of shape (20, 10)", "one integer label per example"]),
    ("no labels, conditional", [*COND, "--config.data.path={data}/unlabelled.npz"], ["config.model.num_classes (10) asks for a class-conditional model", "has no labels", "--config.model.num_classes=0"]),
    ("digits, fewer classes", ["--config=digits/conditional", "--config.model.nf=8", "--config.model.num_classes=5"], ["dataset 'digits' holds labels in [0, 9]", "config.model.num_classes (5)", "--config.model.num_classes=10"]),
    ("toy, conditional", [*GMM, "--config.model.num_classes=3"], ["config.model.num_classes (3)", "'toy/gmm' has no labels", "--config.model.num_classes=0"]),
    ("classifier, labels too large", [*COND, "--mode=train_classifier", "--config.data.path={data}/large.npz"], ["config.classifier.num_classes (10) takes 0..9"]),
    # data files of the wrong kind
    (".npy for .npz", [*DIGITS, "--config.data.dataset=npz", "--config.data.path={data}/array.npy"], ["{data}/array.npy", "one .npy array (np.save), not an .npz archive (np.savez)"]),
    ("text named .npz", [*DIGITS, "--config.data.dataset=npz", "--config.data.path={data}/notes.npz"], ["{data}/notes.npz", "it starts with b'some not'", "np.savez(path, x_train="]),
    ("pixels beyond 255", [*DIGITS, "--config.data.dataset=npz", "--config.data.path={data}/int_large.npz"], ["array 'x_train' is int64", "save images as uint8 (0..255)"]),
    ("int64 pixels", [*DIGITS, "--config.data.dataset=npz", "--config.data.path={data}/int64.npz"], ["array 'x_train' is int64", "uint8"]),
    ("channels first", [*DIGITS, "--config.data.dataset=npz", "--config.data.path={data}/channels_first.npz"], ["channels first", "np.transpose(x, (0, 2, 3, 1))"]),
    ("NaN in the test split", [*DIGITS, "--config.data.dataset=npz", "--config.data.path={data}/nan_test.npz"], ["{data}/nan_test.npz array 'x_test' contains NaN", "remove or fix those examples"]),
    ("empty folder", [*DIGITS, "--config.data.dataset=folder", "--config.data.path={data}/empty"], ["no images", "{data}/empty"]),
    ("RGB and grayscale in a folder", [*DIGITS, "--config.data.dataset=folder", "--config.data.path={data}/mixed"], ["config.data.num_channels (1) does not match 4 of 8 images", "convert them to 1 channel(s) or remove them"]),
    # config files that are not config modules
    ("no get_config", ["--config={data}/no_get_config.py"], ["{data}/no_get_config.py: the file defines no get_config()", "returns an ml_collections.ConfigDict"]),
    ("config is a directory", ["--config={data}/configs"], ["--config={data}/configs is a directory", "e.g. --config={data}/configs/gmm.py"]),
    ("config empty", ["--config="], ["--config is empty", "--config=toy/gmm"]),
    ("import error", ["--config={data}/import_error.py"], ["import_error.py: the config file failed to load", "No module named 'no_such_module_xyz'"]),
    ("get_config with arguments", ["--config={data}/with_arguments.py"], ["get_config(size) needs arguments", "give them defaults"]),
    ("sys.exit(0) at import", ["--config={data}/exits.py"], ["exits.py: the config file failed to load", "it called sys.exit(0)"]),
    ("sys.exit in get_config", ["--config={data}/exits_later.py"], ["get_config() failed", "sys.exit('bye')"]),
    # degenerate values
    ("lr nan", [*GMM, "--config.optim.lr=nan"], ["config.optim.lr (nan) must be a finite number"]),
    ("lr inf", [*GMM, "--config.optim.lr=inf"], ["config.optim.lr (inf) must be a finite number"]),
    ("snapshot_freq 0", [*GMM, "--config.training.snapshot_freq=0"], ["config.training.snapshot_freq (0) must be positive"]),
    ("log_freq 0", [*GMM, "--config.training.log_freq=0"], ["config.training.log_freq (0) must be positive"]),
    ("negative batch", [*GMM, "--config.training.batch_size=-4"], ["config.training.batch_size (-4) must be positive"]),
    ("negative warmup", [*GMM, "--config.optim.warmup=-1"], ["config.optim.warmup (-1) must be >= 0"]),
    ("negative seed", [*GMM, "--config.seed=-7"], ["config.seed must be an int in [0, 2147483647]", "--config.seed=42"]),
    ("no samples", [*GMM, "--mode=sample", "--config.sampling.num_samples=0"], ["config.sampling.num_samples (0) must be positive"]),
    ("no eval samples", [*GMM, "--mode=eval", "--config.eval.enable_sampling=True", "--config.eval.num_samples=0"], ["config.eval.num_samples (0) must be positive"]),
    ("eval range backwards", [*GMM, "--config.eval.begin_ckpt=5", "--config.eval.end_ckpt=2"], ["config.eval.end_ckpt (2) is before config.eval.begin_ckpt (5)", "--config.eval.end_ckpt=5"]),
    ("eval begin below -1", [*GMM, "--mode=eval", "--config.eval.begin_ckpt=-3"], ["config.eval.begin_ckpt (-3) must be a snapshot number >= 0, or -1"]),
    # work directories that cannot be one
    ("workdir /dev/null", [*GMM, "--workdir=/dev/null"], ["--workdir /dev/null is a file, not a directory"]),
    ("workdir under a file", [*GMM, "--workdir={data}/a_file/run"], ["--workdir {data}/a_file/run is not writable (Not a directory)"]),
    ("gs:/ typo", [*GMM, "--workdir=gs:/bucket/x"], ["gs:/bucket/x looks like a gs:// URL with a slash missing", "write gs://bucket/x"]),
]  # fmt: skip

# Rows that open data or build a model before they fail (over 10 s on a small CPU machine).
SLOW = {
    "labels too large", "labels negative", "labels fractional", "labels as text", "labels one-hot",
    "no labels, conditional", "digits, fewer classes", "classifier, labels too large",
    "toy, conditional", "workdir /dev/null", "workdir under a file",
    "pixels beyond 255", "int64 pixels", "channels first", "NaN in the test split",
    ".npy for .npz", "text named .npz", "empty folder", "RGB and grayscale in a folder",
}  # fmt: skip


def _npz(path, **arrays):
    np.savez(path, **arrays)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> pathlib.Path:
    """Every bad file of the table, in one folder."""
    d = tmp_path_factory.mktemp("bad_inputs")
    ok = {"x_test": X, "y_test": LABELS}
    _npz(d / "large.npz", x_train=X, y_train=LABELS + 5, **ok)
    _npz(d / "negative.npz", x_train=X, y_train=LABELS - 3, **ok)
    _npz(d / "fractional.npz", x_train=X, y_train=LABELS + 0.5, **ok)
    _npz(d / "text_labels.npz", x_train=X, y_train=np.array(["cat"] * 20), **ok)
    _npz(d / "one_hot.npz", x_train=X, y_train=np.eye(10)[LABELS], **ok)
    _npz(d / "unlabelled.npz", x_train=X, x_test=X)
    _npz(d / "int_large.npz", x_train=X.astype(np.int64) + 200, x_test=X)
    _npz(d / "int64.npz", x_train=X.astype(np.int64), x_test=X)
    _npz(d / "channels_first.npz", x_train=np.zeros((20, 3, 8, 8), np.uint8), x_test=X)
    _npz(d / "nan_test.npz", x_train=X, x_test=np.full((10, 8, 8, 1), np.nan, np.float32))
    np.save(d / "array.npy", X)
    (d / "notes.npz").write_text("some notes, not arrays\n")
    (d / "empty").mkdir()
    (d / "mixed").mkdir()
    rng = np.random.default_rng(1)
    for i in range(4):
        image_io.save_png(d / "mixed" / f"rgb{i}.png", rng.integers(0, 256, (8, 8, 3), np.uint8))
        image_io.save_png(d / "mixed" / f"gray{i}.png", rng.integers(0, 256, (8, 8), np.uint8))
    (d / "a_file").write_text("not a directory")
    gmm = "from configs.toy import gmm\n\n\ndef get_config({}):\n    return gmm.get_config()\n"
    (d / "configs").mkdir()
    (d / "configs" / "gmm.py").write_text(gmm.format(""))
    (d / "no_get_config.py").write_text(
        "from configs.toy import gmm\n\nconfig = gmm.get_config()\n"
    )
    (d / "import_error.py").write_text("import no_such_module_xyz\n\n\n" + gmm.format(""))
    (d / "with_arguments.py").write_text(gmm.format("size"))
    (d / "exits.py").write_text("import sys\n\nsys.exit(0)\n")
    (d / "exits_later.py").write_text("import sys\n\n\ndef get_config():\n    sys.exit('bye')\n")
    return d


def _launch(cwd, flags, timeout=300):
    return subprocess.run(
        [sys.executable, str(ROOT / "launch.py"), *flags],
        cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"},
    )  # fmt: skip


def _rows():
    for name, flags, needles in CASES:
        marks = [pytest.mark.slow] if name in SLOW else []
        yield pytest.param(flags, needles, id=name, marks=marks)


def test_the_table_covers_every_class():
    assert len(CASES) >= 35 and len({c[0] for c in CASES}) == len(CASES)
    assert SLOW <= {c[0] for c in CASES}


@pytest.mark.parametrize("flags, needles", list(_rows()))
def test_refused_with_one_line_and_nothing_changed(data, tmp_path, flags, needles):
    cwd, workdir = tmp_path / "cwd", tmp_path / "run"
    for d in (cwd, workdir):
        d.mkdir()
        (d / "notes.txt").write_text("keep me")
    flags = [f.replace("{data}", str(data)) for f in flags]
    if not any(f.startswith("--workdir") for f in flags):
        flags.append(f"--workdir={workdir}")
    before, data_before = file_tree(tmp_path), file_tree(data)
    proc = _launch(cwd, flags)
    needles = [n.replace("{data}", str(data)) for n in needles]
    assert_refused(proc, needles, before, file_tree(tmp_path))
    assert file_tree(data) == data_before


@pytest.mark.slow
def test_a_work_directory_with_spaces_and_accents_works(tmp_path):
    flags = [f"--config.{k}={v}" for k, v in TINY["launch"].items()]
    proc = _launch(tmp_path, [*GMM, "--workdir=runs/mon essai é", *flags])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    workdir = tmp_path / "runs" / "mon essai é"
    assert any("checkpoint" in p for p in file_tree(workdir)), sorted(file_tree(workdir))
