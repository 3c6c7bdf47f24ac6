"""Bad inputs to the launcher: one clear line naming the field or path and the fix, exit status 2,
no traceback, and nothing in an existing work directory lost.

Most cases call the importable functions the launcher calls (`config.split_argv` + `config.load`
on a real command line, `modes.run`); a few run `launch.py` itself to check the exit status and
stderr.
"""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from score_sde import config
from score_sde.run import modes
from tests.helpers import (
    GMM,
    REPO,
    TINY,
    assert_kept,
    assert_one_clear_line,
    snapshot,
    tiny_config,
)

# ---------------------------------------------------------------------------- flag parsing


@pytest.mark.parametrize(
    "argv, needles",
    [
        (  # a field the config does not have, with the closest name
            ["--config.training.n_iter=5"],
            ["--config.training.n_iter", "did you mean config.training.n_iters?", "spelling"],
        ),
        (  # a field of another section: that section is named
            ["--config.training.nf=5"],
            ["--config.training.nf", "did you mean config.model.nf?"],
        ),
        (  # a field only some model families have (ncsnpp's, on the toy MLP)
            ["--config.model.ch_mult=(1,2)"],
            ["config.model (model 'mlp') has no field 'ch_mult'"],
        ),
        (
            ["--config.model.batch_size=5"],
            ["did you mean config.training.batch_size?"],
        ),
        (  # a section the config does not have
            ["--config.trainin.n_iters=5"],
            ["--config.trainin.n_iters", "did you mean config.training?"],
        ),
        (  # a value of the wrong type
            ["--config.training.n_iters=abc"],
            ["--config.training.n_iters=abc", "type int", "--config.training.n_iters=3000"],
        ),
        (
            ["--config.training.snapshot_sampling=maybe"],
            ["type bool", "--config.training.snapshot_sampling=True"],
        ),
        (  # a missing config file
            ["--config=configs/nope.py"],
            ["--config=configs/nope.py: no such config file", "--config=configs/toy/gmm.py"],
        ),
    ],
)
def test_flag_errors_name_the_flag_and_the_fix(argv, needles):
    path, overrides, rest = config.split_argv(argv, GMM)
    assert rest == []
    with pytest.raises(ValueError) as info:
        config.load(path, overrides)
    assert_one_clear_line(str(info.value), *needles)


def test_config_file_that_fails_to_load(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def get_config():\n    return 1 +\n")
    with pytest.raises(ValueError) as info:
        config.load(str(bad))
    assert_one_clear_line(
        str(info.value), f"--config={bad}: the config file failed to load", "SyntaxError"
    )


def test_config_file_that_returns_no_configdict(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def get_config():\n    return [1, 2]\n")
    with pytest.raises(ValueError) as info:
        config.load(str(bad))
    assert_one_clear_line(str(info.value), "get_config() returned list", "ConfigDict")


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--config", "a.py", "--workdir=w"], ("a.py", {}, ["--workdir=w"])),
        (["--config=a.py", "--config.training.n_iters=5"], ("a.py", {"training.n_iters": "5"}, [])),
        (  # space-separated values, and a bare boolean
            ["--config.model.ch_mult", "(1,2)", "--config.training.snapshot_sampling", "--mode=x"],
            (GMM, {"model.ch_mult": "(1,2)", "training.snapshot_sampling": "True"}, ["--mode=x"]),
        ),
    ],
)
def test_command_line_split(argv, expected):
    assert config.split_argv(argv, GMM) == expected


def test_every_field_is_settable_for_every_config():
    """Fields a config file does not set still exist: the README's sample command works on the
    published CIFAR-10 configs, and on an original score_sde file (no sampling.num_samples)."""
    path = os.path.join(REPO, "configs", "vp", "cifar10_ddpmpp_continuous.py")
    cfg = config.load(
        path,
        {
            "sampling.method": "ode",
            "sampling.num_samples": "1000",
            "sampling.batch_size": "100",
            "data.path": "/data/cifar10.npz",
            "data.data_dir": "/data/tfds",
            "eval.num_bpd_examples": "500",
            "model.dtype": "bfloat16",
            "model.ch_mult": "1,2,2",
        },
    )
    assert (cfg.sampling.method, cfg.sampling.num_samples, cfg.sampling.batch_size) == (
        "ode",
        1000,
        100,
    )
    assert (cfg.data.path, cfg.data.data_dir, cfg.eval.num_bpd_examples) == (
        "/data/cifar10.npz",
        "/data/tfds",
        500,
    )
    assert cfg.model.dtype == "bfloat16" and cfg.model.ch_mult == (1, 2, 2)


# ---------------------------------------------------------------------------- modes.run


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A work directory with a 2-step checkpoint of tiny_config()."""
    workdir = tmp_path_factory.mktemp("trained")
    modes.run("train", tiny_config(), str(workdir))
    return workdir


def _copy(trained, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(trained, workdir)
    return workdir


def _corrupt(workdir):
    """Truncates every array file of the checkpoint at step 2."""
    n = 0
    for root, _, files in os.walk(workdir / "checkpoints" / "2"):
        for f in files:
            if not f.endswith((".json", "_METADATA", "_CHECKPOINT_METADATA")):
                with open(os.path.join(root, f), "r+b") as fh:
                    fh.truncate(max(0, os.path.getsize(os.path.join(root, f)) // 3))
                n += 1
    assert n


CASES = {
    "unknown mode": (
        "fit",
        {},
        ["--mode='fit' is not a mode", "train, eval, sample"],
    ),
    "unknown field": (
        "train",
        {"training.n_iter": 5},
        ["config.training.n_iter is not a known field", "did you mean config.training.n_iters?"],
    ),
    "missing field": (
        "train",
        {"training.n_iters": None},
        ["config.training.n_iters is missing", "--config.training.n_iters=VALUE"],
    ),
    "typo inside config.model": (
        "train",
        {"model.nff": 16},
        ["config.model.nff is not a known field", "did you mean config.model.nf?"],
    ),
    "missing section": (
        "train",
        {"training.*": None},
        ["config.training is missing", "configs/toy/base.py"],
    ),
    "wrong type": (
        "train",
        {"training.batch_size": "16"},
        ["config.training.batch_size must be int, got str '16'"],
    ),
    "batch size vs devices": (
        "train",
        {"training.batch_size": 6},
        ["config.training.batch_size (6) must be divisible by the number of devices (4)"],
    ),
    "unknown dataset": (
        "train",
        {"data.dataset": "cifar100"},
        ["cifar100"],
    ),
    "missing data file": (
        "train",
        {"data.dataset": "npz", "data.path": "/nonexistent/points.npz"},
        ["/nonexistent/points.npz"],
    ),
    "eval without checkpoint": (
        "eval",
        {},
        ["no checkpoint to evaluate in", "--mode=train --workdir="],
    ),
    "sample without checkpoint": (
        "sample",
        {},
        ["no checkpoint in", "--mode=train --workdir="],
    ),
    "resume with another model": (
        "train",
        {"model.nf": 32, "training.n_iters": 4},
        ["checkpoints/2 cannot be restored", "config.json", "fresh --workdir"],
    ),
    "eval with another model": (
        "eval",
        {"model.nf": 32},
        ["checkpoints/2 cannot be restored", "config.json"],
    ),
    "corrupt checkpoint": (
        "eval",
        {},
        ["checkpoints/2", "every one is damaged", "Nothing was deleted"],
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_run_errors_name_the_field_and_keep_the_workdir(case, trained, tmp_path):
    mode, fields, needles = CASES[case]
    uses_checkpoint = "model" in case or "corrupt" in case
    if uses_checkpoint:
        workdir = _copy(trained, tmp_path)
        if "corrupt" in case:
            _corrupt(workdir)
    else:
        workdir = tmp_path / "run"
        workdir.mkdir()
    (workdir / "notes.txt").write_text("keep me")
    before = snapshot(workdir)
    config = tiny_config(**{k: v for k, v in fields.items() if v is not None})
    for k, v in fields.items():
        if v is None:
            section, name = k.split(".")
            if name == "*":
                del config[section]
            else:
                del config[section][name]
    with pytest.raises(ValueError) as info:
        modes.run(mode, config, str(workdir))
    assert_one_clear_line(str(info.value), *needles)
    assert_kept(before, workdir)


def test_unwritable_workdir(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("keep me")
    with pytest.raises(ValueError) as info:
        modes.run("train", tiny_config(), str(blocker / "run"))
    assert_one_clear_line(
        str(info.value), f"--workdir {blocker / 'run'} is not writable", "--workdir="
    )
    assert blocker.read_text() == "keep me"


@pytest.mark.parametrize(
    "field, value, needle",
    [
        ("model.nf", "-1", "config.model.nf (-1) must be positive"),
        ("sampling.num_samples", "0", "config.sampling.num_samples (0) must be positive"),
        ("eval.num_samples", "0", "config.eval.num_samples (0) must be positive"),
        ("sampling.snr", "-0.1", "config.sampling.snr (-0.1) must be >= 0"),
        ("optim.grad_clip", "nan", "config.optim.grad_clip (nan) must be a finite"),
        ("optim.lr", "inf", "config.optim.lr (inf) must be a finite number"),
        ("training.batch_size", "0", "config.training.batch_size (0) must be positive"),
    ],
)
def test_bad_values_once_accepted_silently_are_rejected(field, value, needle):
    """Values that were once accepted silently or ended in a traceback, as command-line flags."""
    with pytest.raises(ValueError) as info:
        config.load("toy/gmm", {field: value})
    assert_one_clear_line(str(info.value), needle)


# ---------------------------------------------------------------------------- launch.py itself


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--config.training.n_iter=5"], "did you mean config.training.n_iters?"),  # parse time
        (["--config=configs/nope.py"], "no such config file"),
        (["--mode=fit"], "--mode='fit' is not a mode"),  # modes.run's ValueError
        (["--overwrite"], "--overwrite is for sample mode"),  # training never overwrites
    ],
)
def test_launch_exits_2_with_one_line(args, needle, tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "notes.txt").write_text("keep me")
    before = snapshot(workdir)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, "launch.py", "--config=configs/toy/gmm.py", f"--workdir={workdir}", *args],
        cwd=REPO, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    assert_one_clear_line(lines[0], needle)
    assert_kept(before, workdir)


@pytest.mark.slow
def test_sampling_again_with_the_same_settings_needs_overwrite(trained, tmp_path):
    """`score-sde sample` twice: the second is refused in one line naming the file (exit 2,
    nothing changed); with --overwrite it writes the same samples again."""
    workdir = _copy(trained, tmp_path)
    flags = [f"--config.{k}={v}" for k, v in TINY["launch"].items()]
    argv = [sys.executable, "launch.py", "--config=configs/toy/gmm.py", f"--workdir={workdir}",
            "--mode=sample", "--config.sampling.method=ddim", "--config.sampling.num_steps=3",
            *flags]  # fmt: skip
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    run = lambda *more: subprocess.run(
        [*argv, *more], cwd=REPO, capture_output=True, text=True, timeout=240, env=env
    )
    first = run()
    assert first.returncode == 0, first.stderr[-3000:]
    (npz,) = (workdir / "samples").glob("ckpt_2_ddim_nfe3_*.npz")
    before = snapshot(workdir)
    again = run()
    assert again.returncode == 2, again.stderr[-3000:]
    lines = [ln for ln in again.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in again.stderr, again.stderr[-3000:]
    assert_one_clear_line(lines[0], f"{npz} exists", "--overwrite", "--config.seed")
    assert_kept(before, workdir)
    samples = np.load(npz)["samples"]
    forced = run("--overwrite")
    assert forced.returncode == 0, forced.stderr[-3000:]
    np.testing.assert_array_equal(np.load(npz)["samples"], samples)


@pytest.mark.parametrize("begin_ckpt", [-1, 1])
def test_eval_without_checkpoint_hints_fit_the_range(begin_ckpt, tmp_path):
    """The newest checkpoint was asked for (-1): the hint is to train, not to pass -1 again; a
    snapshot range: the range, the snapshot steps found and -1 are named."""
    config = tiny_config()
    config.eval.begin_ckpt = begin_ckpt
    with pytest.raises(ValueError) as info:
        modes.run("eval", config, str(tmp_path))
    message = str(info.value)
    assert_one_clear_line(message, "no checkpoint to evaluate in", "--mode=train --workdir=")
    assert ("--config.eval.begin_ckpt=-1" in message) == (begin_ckpt >= 0), message
    assert ("snapshot steps: []" in message) == (begin_ckpt >= 0), message
