"""Faults of two classes of issue 37, through the real launcher, one row per case.

Damage an operator does by hand to a trained work directory (the tiny checkpointed run: snapshots
10, 20, 24, preemption slot 16), then the same command resumes it to step 32: exit 0, no
traceback, the one line each damage deserves, resumed from the newest intact state, the
operator's files left alone, every record logged after it readable, and step 32 bit-identical to
an uninterrupted 32-step run's.

Several jobs on one work directory: they work side by side (same results as alone), or the second
is refused in one line naming the other; never colliding saves or a lost checkpoint.

    case                                      outcome
    a checkpoint's data file truncated        skipped in one line, resumed from 20
    a checkpoint's file / sub-directory gone  skipped in one line, resumed from 20
    config.json edited (a model field)        one note naming config.json and the field: ignored,
                                              the command line's config is used and written
    config.json cut (not JSON)                one note naming config.json: ignored, written anew
    run.json deleted                          the newest checkpoint's run id adopted, resumed
    the work directory moved                  resumed from the new place
    checkpoints/ moved to another disk, linked  resumed through the link
    extra files in checkpoints/               left alone, even by keep_checkpoints
    metrics.jsonl cut mid-line, a junk line   later records on lines of their own; plot works
    two samples at once                       both write the same file (atomic), or one refused
    eval / sample beside a training           work; a checkpoint rolled away while read is said so
    a second training through a linked dir    refused by the lock, naming the pid
    checkpoints/ linked into another workdir  refused in one line naming the other work directory
    a copied work directory                   both resume side by side, identical to a straight run
"""

import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from score_sde.store import checkpoint, metrics_log
from tests.helpers import (
    NOISE,
    PROGRESS_LINE,
    REPO,
    assert_trees_equal,
    file_tree,
    restore_host,
    snapshot,
    tiny_flags,
    truncate_file,
)

pytestmark = pytest.mark.slow  # each row launches the real launcher (seconds to a minute)

END = 32  # every resumed run trains to here; `base` holds an uninterrupted run to it
EVAL = [
    "--config.eval.begin_ckpt=-1",
    "--config.eval.enable_sampling=False",
    "--config.eval.enable_bpd=False",
    "--config.eval.batch_size=16",
]
SAMPLE = ["--config.sampling.num_samples=16"]


def _argv(workdir, mode, *more) -> list[str]:
    return [f"--mode={mode}", "--config=configs/toy/gmm.py", f"--workdir={workdir}",
            *tiny_flags(), *more]  # fmt: skip


def _launch(workdir, *more, mode="train", timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "launch.py", *_argv(workdir, mode, *more)],
        cwd=REPO, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def _start(workdir, *more, mode="train", out=subprocess.PIPE, err=subprocess.PIPE):
    return subprocess.Popen(
        [sys.executable, "launch.py", *_argv(workdir, mode, *more)],
        cwd=REPO, stdout=out, stderr=err, text=True,
    )  # fmt: skip


def _said(stderr: str) -> list[str]:
    """The lines on stderr besides progress lines; no traceback or library noise."""
    for noise in NOISE:
        assert noise not in stderr, stderr[-3000:]
    return [ln for ln in stderr.splitlines() if ln.strip() and not PROGRESS_LINE.match(ln)]


def _refused(proc, *needles: str) -> str:
    """Exit 2 and one `error:` line holding every needle."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    lines = _said(proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def _records_after(before: bytes, path: pathlib.Path) -> list[dict]:
    """The records appended to metrics.jsonl after its content `before` (kept as it was): every
    line holding an appended byte must parse (none glued onto a line cut short)."""
    after = path.read_bytes()
    assert after.startswith(before), "metrics.jsonl was changed, not appended to"
    records, offset = [], 0
    for line in after.split(b"\n"):
        end = offset + len(line)
        if end > len(before) and line.strip():
            records.append(json.loads(line))
        offset = end + 1
    assert all(isinstance(r.get("step"), int) for r in records)
    return records


@pytest.fixture(scope="module")
def base(tiny_run, tiny_exp, tmp_path_factory):
    """(the trained tiny run to copy, the state's structure, the state at END of a straight run
    through the launcher)."""
    straight = tmp_path_factory.mktemp("straight") / "run"
    proc = _launch(straight, f"--config.training.n_iters={END}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    like = tiny_exp.state_like()
    return tiny_run, like, restore_host(straight, like, END)[0]


def _copy(base, where: pathlib.Path, name="run") -> pathlib.Path:
    run = where / name
    shutil.copytree(base[0], run, symlinks=True)
    return run


# ---------------------------------------------------------------------------- damage by hand


def _truncated(run):
    truncate_file(run / "checkpoints" / "24")
    return run


def _file_deleted(run):
    (run / "checkpoints" / "24" / "state" / "_METADATA").unlink()
    return run


def _subdir_deleted(run):
    shutil.rmtree(run / "checkpoints" / "24" / "checksums")
    return run


def _config_edited(run):
    path = run / "config.json"
    config = json.loads(path.read_text())
    config["model"]["nf"] = 32  # what the checkpoints hold says 16
    config["training"]["batch_size"] = 64  # a field a resumed run may change
    path.write_text(json.dumps(config, indent=2))
    return run


def _config_cut(run):
    path = run / "config.json"
    path.write_text(path.read_text()[:200])
    return run


def _run_json_deleted(run):
    (run / "run.json").unlink()
    return run


def _moved(run):
    new = run.with_name("moved here")
    run.rename(new)
    return new


def _checkpoints_on_another_disk(run):
    disk = run.parent / "disk"
    disk.mkdir()
    (run / "checkpoints").rename(disk / "run-checkpoints")
    (run / "checkpoints").symlink_to(disk / "run-checkpoints")
    return run


def _extra_files(run):
    ckpts = run / "checkpoints"
    shutil.copytree(ckpts / "24", ckpts / "24 copy")
    shutil.copytree(ckpts / "20", ckpts / "backup" / "20")
    (ckpts / "README.txt").write_text("step 20 is the good one\n")
    (run / "checkpoints-meta" / "README.txt").write_text("do not touch\n")
    return run


def _metrics_cut(run):
    path = run / "metrics.jsonl"
    text = path.read_text()
    first = text.splitlines()[0]
    path.write_text(text + "an operator's note\n" + first[: len(first) // 2])
    return run


def _kept_extras(run, proc):
    assert sorted(os.listdir(run / "checkpoints")) == ["24 copy", "32", "README.txt", "backup"]
    for step in (10, 20, 24, 30):  # this run's own older snapshots: keep_checkpoints=1
        assert f"deleted {run}/checkpoints/{step} (config.training.keep_checkpoints = 1)" in (
            proc.stdout
        )


def _plot_reads_every_record(run, proc):
    plot = subprocess.run(
        [sys.executable, "launch.py", "plot", f"--workdir={run}"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert plot.returncode == 0, plot.stderr[-2000:]
    assert f"note: skipped 2 unreadable line(s) of the metrics in {run}" in plot.stderr
    assert (run / "plots" / "loss.png").is_file()
    steps = {r["step"] for r in metrics_log.read(str(run)) or [] if "training_loss" in r}
    assert set(range(26, END + 1, 2)) <= steps  # log_freq 2 from the resumed step on


def _config_written(run, proc):
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["nf"] == 16 and config["training"]["n_iters"] == END


def _run_json_adopted(run, proc):
    doc = json.loads((run / "checkpoints" / "32" / "checksums" / "metadata").read_text())
    assert json.loads((run / "run.json").read_text())["run_id"] == doc["run"]["run_id"]


SKIPPED = "warning: skipped checkpoint {run}/checkpoints/24: "
# (id, what the operator does (returns the work directory to resume), more flags, the step it
# resumes from, lines it says on stdout, its lines on stderr, (files it may change or delete),
# a last check (workdir, process))
HAND = [
    ("a data file truncated", _truncated, [], 20, [],
     [SKIPPED + "unreadable array data"], (), None),
    ("a file deleted", _file_deleted, [], 20, [],
     [SKIPPED + "unreadable metadata"], (), None),
    ("a sub-directory deleted", _subdir_deleted, [], 20, [],
     [SKIPPED + "missing or unreadable checksums"], (), None),
    ("config.json edited", _config_edited, [], 24,
     ["note: {run}/config.json differs from checkpoint {run}/checkpoints/24 in model.nf (32 there, "
      "16 in it): edited by hand? Ignored: training takes its config from the command line",
      "resumed with a changed field: training.batch_size: 64 -> 16"], [], (), _config_written),
    ("config.json cut", _config_cut, [], 24,
     ["note: {run}/config.json is not a readable config (", "edited by hand? Ignored"], [], (),
     _config_written),
    ("run.json deleted", _run_json_deleted, [], 24, [], [], (), _run_json_adopted),
    ("the work directory moved", _moved, [], 24, [], [], (), None),
    ("checkpoints/ moved to another disk and linked", _checkpoints_on_another_disk, [], 24, [],
     [], (), None),
    ("extra files in checkpoints/", _extra_files, ["--config.training.keep_checkpoints=1"], 24,
     [], [], ("checkpoints/10/", "checkpoints/20/", "checkpoints/24/"), _kept_extras),
    ("metrics.jsonl cut mid-line", _metrics_cut, ["--config.training.log_freq=2"], 24, [], [],
     (), _plot_reads_every_record),
]  # fmt: skip


@pytest.mark.parametrize(
    "damage, more, resumed, out, err, changes, check",
    [c[1:] for c in HAND],
    ids=[c[0] for c in HAND],
)
def test_hand_damage_resumes_from_the_newest_intact_state(
    base, tmp_path, damage, more, resumed, out, err, changes, check
):
    run = damage(_copy(base, tmp_path))
    before = snapshot(run)
    metrics = (run / "metrics.jsonl").read_bytes()
    proc = _launch(run, f"--config.training.n_iters={END}", *more)
    assert proc.returncode == 0, proc.stderr[-3000:]
    said = _said(proc.stderr)
    assert len(said) == len(err), said
    for line, want in zip(said, err, strict=True):
        assert line.startswith(want.format(run=run)), (line, want)
    for want in out:
        assert want.format(run=run) in proc.stdout, proc.stdout[-3000:]
    assert f"resumed from step {resumed} in {run}" in proc.stdout
    state, step, _ = restore_host(run, base[1], END)
    assert_trees_equal(state, base[2])  # bit for bit the uninterrupted run's
    after = snapshot(run)
    ours = ("config.json", "metrics.jsonl", "tensorboard/", "checkpoints-meta/16/", *changes)
    lost = sorted(k for k, v in before.items() if not k.startswith(ours) and after.get(k) != v)
    assert not lost, f"changed or deleted: {lost}"
    assert _records_after(metrics, run / "metrics.jsonl")  # every later record readable
    if check is not None:
        check(run, proc)


# ---------------------------------------------------------------------------- several jobs


def test_two_samples_at_once_write_the_same_file_or_one_is_refused(base, tmp_path):
    run = _copy(base, tmp_path)
    jobs = [_start(run, *SAMPLE, mode="sample") for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in jobs]
    codes = sorted(p.returncode for p in jobs)
    assert codes in ([0, 0], [0, 2]), [e[-2000:] for _, e in outs]
    files = sorted(os.listdir(run / "samples"))  # one .npz and its .png, no temporary file
    assert len(files) == 2 and files[0].endswith(".npz") and files[1].endswith(".png"), files
    npz = run / "samples" / files[0]
    for p, (stdout, stderr) in zip(jobs, outs, strict=True):
        if p.returncode == 0:
            assert _said(stderr) == [] and f"-> {npz}" in stdout
        else:  # the other had written its file before this one looked
            _refused(subprocess.CompletedProcess([], 2, stdout, stderr), str(npz), "--overwrite")
    with np.load(npz) as f:
        assert f["samples"].shape == (16, 2) and np.isfinite(f["samples"]).all()


def test_a_copied_work_directory_resumes_beside_its_original(base, tmp_path):
    runs = [_copy(base, tmp_path, "original"), None]
    runs[1] = tmp_path / "copy"
    shutil.copytree(runs[0], runs[1])
    jobs = [_start(run, f"--config.training.n_iters={END}") for run in runs]
    outs = [p.communicate(timeout=300) for p in jobs]
    assert [p.returncode for p in jobs] == [0, 0], [e[-2000:] for _, e in outs]
    for run, (stdout, stderr) in zip(runs, outs, strict=True):
        assert _said(stderr) == [] and f"resumed from step 24 in {run}" in stdout
        assert_trees_equal(restore_host(run, base[1], END)[0], base[2])


_ROLLED_AWAY = """
    import shutil, sys
    from score_sde.cli import main
    from score_sde.store.checkpoint import _read

    read_step, removed = _read.read_step, []

    def rolled_away(path, like):  # the training beside this job deletes what it starts to read
        if not removed:
            removed.append(path)
            shutil.rmtree(path)
        return read_step(path, like)

    _read.read_step = rolled_away
    main(["score-sde", *sys.argv[1:]])
"""


def test_a_checkpoint_removed_while_eval_reads_it_is_said_so(base, tmp_path):
    """The moment an eval job meets when the training beside it rolls its preemption checkpoint
    (or keep_checkpoints deletes a snapshot) as it reads: not damage, the next newest is taken."""
    run = _copy(base, tmp_path)
    script = tmp_path / "rolled_away.py"
    script.write_text(textwrap.dedent(_ROLLED_AWAY))
    proc = subprocess.run(
        [sys.executable, str(script), *_argv(run, "eval", *EVAL)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": REPO},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _said(proc.stderr) == [
        f"warning: skipped checkpoint {run}/checkpoints/24: removed while it was read, by a run "
        "writing this work directory (its rolling preemption checkpoint, or "
        "config.training.keep_checkpoints)"
    ]
    assert "checkpoint 20: eval loss" in proc.stdout
    assert json.loads((run / "eval" / "20" / "results.json").read_text())["step"] == 20


@pytest.fixture(scope="module")
def training(base, tmp_path_factory):
    """A training running on a copy of the tiny run (a preemption checkpoint every 2 steps, two
    snapshots kept): (its work directory, its process), once it has saved past step 24."""
    where = tmp_path_factory.mktemp("beside")
    run = _copy(base, where, "A")
    logs = [open(where / name, "w+") for name in ("out.txt", "err.txt")]  # no pipe to fill up
    proc = _start(
        run,
        "--config.training.n_iters=1000000",
        "--config.training.snapshot_freq_for_preemption=2",
        "--config.training.keep_checkpoints=2",
        "--config.training.log_freq=2",
        out=logs[0],
        err=logs[1],
    )
    try:
        end = time.time() + 240
        while not any(int(s) > 24 for s in os.listdir(run / "checkpoints-meta") if s.isdigit()):
            assert proc.poll() is None, (where / "err.txt").read_text()[-3000:]
            assert time.time() < end, "no preemption checkpoint past step 24 within 240 s"
            time.sleep(0.3)
        yield run, proc, where
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for f in logs:
            f.close()


def _link_workdir(tmp_path, a):
    link = tmp_path / "A through a link"
    link.symlink_to(a)
    return link


def _link_checkpoints(tmp_path, a):
    b = tmp_path / "B"
    b.mkdir()
    (b / "checkpoints").symlink_to(a / "checkpoints")
    return b


def _same(tmp_path, a):
    return a


# (id, the work directory the second job is given, its mode and flags, refused: the line's needles
# ({a}: the training's work directory, {b}: the second job's, {pid}: the training's) or None
# when it must work)
BESIDE = [
    ("eval", _same, "eval", EVAL, None),
    ("sample", _same, "sample", SAMPLE, None),
    ("a second training through a linked work directory", _link_workdir, "train", [],
     ["work directory {b} is in use by another run (pid {pid} ", "--workdir"]),
    ("a training in a work directory whose checkpoints/ links to the first's", _link_checkpoints,
     "train", [], ["{b}/checkpoints is a symbolic link to {a}/checkpoints, the checkpoints/ of the "
                   "work directory {a}: two work directories would save into one folder; train "
                   "there (--workdir={a}), or give this one a copy of its own (rm {b}/checkpoints "
                   "&& cp -r {a}/checkpoints {b}/checkpoints)"]),
]  # fmt: skip


@pytest.mark.parametrize("where, mode, more, refused", [c[1:] for c in BESIDE],
                         ids=[c[0] for c in BESIDE])  # fmt: skip
def test_a_job_beside_a_running_training_works_or_is_refused_in_one_line(
    training, tmp_path, where, mode, more, refused
):
    a, trainer, _ = training
    b = where(tmp_path, a)
    before = file_tree(tmp_path)
    proc = _launch(b, *more, mode=mode)
    assert trainer.poll() is None  # the training goes on
    if refused is not None:
        fill = {"a": a, "b": b, "pid": trainer.pid}
        _refused(proc, *(n.format(**fill) for n in refused))
        assert file_tree(tmp_path) == before  # nothing created or changed
        return
    assert proc.returncode == 0, proc.stderr[-3000:]
    for line in _said(proc.stderr):  # at most: the checkpoint it began to read was rolled away
        assert (
            line.startswith("warning: skipped checkpoint ") and "removed while it was read" in line
        )
    if mode == "eval":
        step = int(re.findall(r"checkpoint (\d+): eval loss", proc.stdout)[-1])
        assert json.loads((a / "eval" / str(step) / "results.json").read_text())["step"] == step
    else:
        assert any(f.endswith(".npz") for f in os.listdir(a / "samples"))


def test_the_training_beside_the_jobs_lost_nothing(base, training):
    a, trainer, logs = training
    trainer.send_signal(signal.SIGTERM)
    assert trainer.wait(timeout=120) == 143, (logs / "err.txt").read_text()[-3000:]
    said = _said((logs / "err.txt").read_text())
    assert len(said) == 1 and said[0].startswith("SIGTERM: preempted at step "), said
    with checkpoint.Checkpoints(str(a), read_only=True) as ckpts:
        steps = [*ckpts.snapshot_steps(), ckpts.latest_step()]
    for step in steps:  # every checkpoint left is intact: no colliding save, none half-deleted
        _, used, warnings = restore_host(a, base[1], step)
        assert used == step and warnings == []
    records = metrics_log.read(str(a)) or []
    lines = [ln for ln in (a / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    assert len(records) == len(lines)  # training, eval and sample lines interleaved, none broken
