"""README's Python examples run as written and their assertions hold.

Blocks fenced as ```python are executed, each in a fresh namespace from the repository root; a
block whose first line is `# needs: ...` (prepared datasets, downloaded weights) is skipped.
"""

import re

import pytest

from tests.helpers import ROOT

BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 2


RUN_C10 = "# needs: a trained or converted work directory runs/c10"


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example(index, tmp_path, monkeypatch):
    code = BLOCKS[index]
    if code.startswith("# needs:") and not code.startswith(RUN_C10):
        pytest.skip(code.splitlines()[0])
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("SCORE_SDE_README_TMP", str(tmp_path))
    if code.startswith(RUN_C10):  # the API block: a tiny CIFAR-shaped run at runs/c10 first
        _tiny_c10_run(tmp_path / "runs" / "c10")
        monkeypatch.chdir(tmp_path)
    scope = {"__name__": "__readme__"}
    exec(compile(code, f"README.md block {index}", "exec"), scope)
    if code.startswith(RUN_C10):  # as its comments say
        import numpy as np

        assert (
            scope["x"].shape == (64, 32, 32, 3) and 0 <= scope["x"].min() <= scope["x"].max() <= 1
        )
        assert scope["bpd"].shape == (8,) and np.isfinite(scope["bpd"]).all()


def _tiny_c10_run(workdir) -> None:
    """One training step of a shrunk vp/cifar10_ddpmpp_continuous on random 32x32 RGB images in
    the npz dataset format; 20 sampler steps, so the README's 64 samples are quick."""
    import io

    import numpy as np

    from score_sde import config
    from score_sde.run import modes

    data = workdir.parent / "c10.npz"
    data.parent.mkdir(parents=True, exist_ok=True)
    x = np.random.default_rng(0).integers(0, 256, (12, 32, 32, 3), np.uint8)
    np.savez(data, x_train=x[:8], x_test=x[8:])
    overrides = {
        "data.dataset": "npz",
        "data.path": str(data),
        "model.nf": "8",
        "model.ch_mult": "(1,2)",
        "model.num_res_blocks": "1",
        "model.attn_resolutions": "(16,)",
        "model.num_scales": "20",
        "training.batch_size": "4",
        "training.n_iters": "1",
        "training.snapshot_sampling": "False",
        "training.eval_after_training": "False",
        "eval.rtol": "1e-3",
        "eval.atol": "1e-3",
    }
    cfg = config.load("vp/cifar10_ddpmpp_continuous", overrides)
    modes.run("train", cfg, str(workdir), stream=io.StringIO())


def _commands(program: str) -> list[list[str]]:
    """The `program ...` command lines of README's bash blocks (continuations joined, comments
    dropped), split like a shell would."""
    import shlex

    out = []
    for block in re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                argv = shlex.split(part, comments=True)
                if argv[:2] == ["python", program]:
                    out.append(argv[2:])
    return out


LAUNCH_COMMANDS = _commands("launch.py")


def test_readme_has_launcher_commands():
    assert len(LAUNCH_COMMANDS) >= 10


@pytest.mark.slow
@pytest.mark.parametrize("argv", LAUNCH_COMMANDS, ids=lambda a: " ".join(a)[:80])
def test_readme_launcher_command_parses_and_builds(argv):
    """Every `python launch.py ...` line of the README, run with --dry_run: its flags and config
    fields exist, the config passes the boundary and its network builds (nothing is trained)."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "launch.py", *argv, "--dry_run"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "parameters, mode" in proc.stdout.splitlines()[-1], proc.stdout[-2000:]


def _all_commands() -> list[list[str]]:
    """Every command of README's bash blocks (continuations joined, `&&` chains split)."""
    import shlex

    out = []
    for block in re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                argv = shlex.split(part, comments=True)
                if argv:
                    out.append(argv)
    return out


def _kind(argv: list[str]) -> str:
    """Which test covers a README command."""
    if argv[:2] == ["python", "launch.py"]:
        return "launch"  # test_readme_launcher_command_parses_and_builds
    if argv[:3] == ["python", "-m", "score_sde.data.prepare"]:
        return "prepare"  # test_readme_prepare_commands_run
    if argv[:3] == ["python", "-m", "score_sde.convert"]:
        return "convert"  # test_readme_convert_commands_parse
    if argv[:3] == ["python", "-m", "score_sde.phema"]:
        return "phema"  # test_readme_phema_commands_run
    if (
        argv[:3]
        in (
            ["python", "-m", "score_sde.evaluation.inception"],
            ["python", "-m", "score_sde.evaluation.reference_stats"],
        )
        or argv[0] == "wget"
    ):
        return "researcher_path"  # tests/system/test_researcher_path.py runs (or replaces) these
    if argv[0] in ("python", "bash") and argv[1].startswith("benchmarks/"):
        return "benchmark"  # test_readme_benchmark_flags_exist
    if argv[:2] == ["python", "examples/walkthrough.py"]:
        return "example"  # tests/system/test_examples.py runs it on a tiny model
    if argv[0] in ("python3", ".", "pip") or argv[:2] == ["python", "-m"] and argv[2] == "pytest":
        return "install"  # the two first commands: .ci/run installs and tests; tests/system/test_demo.py
    return "unknown"


def test_every_readme_command_has_a_test():
    unknown = [" ".join(a) for a in _all_commands() if _kind(a) == "unknown"]
    assert not unknown, unknown
    kinds = {_kind(a) for a in _all_commands()}
    assert {"launch", "prepare", "convert", "researcher_path", "benchmark"} <= kinds


def _run(argv, cwd, timeout=300):
    import subprocess
    import sys

    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, *argv[1:]], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def test_readme_prepare_commands_run(tmp_path):
    """Each `python -m score_sde.data.prepare` line, run as written on small sources at its paths."""
    import numpy as np
    from scipy import io as sio

    from score_sde.store import image_io
    from tests.helpers import cifar_archive

    commands = [a for a in _all_commands() if _kind(a) == "prepare"]
    assert {a[3] for a in commands} == {"cifar10", "svhn", "folder"}
    rng = np.random.default_rng(0)
    for argv in commands:
        source = tmp_path / argv[argv.index("--source") + 1]
        if argv[3] == "cifar10" and not source.exists():
            cifar_archive(source)
        elif argv[3] == "svhn":
            source.mkdir(parents=True, exist_ok=True)
            for split in ("train", "test"):
                x = rng.integers(0, 256, (32, 32, 3, 4), np.uint8)
                sio.savemat(source / f"{split}_32x32.mat", {"X": x, "y": np.ones((4, 1))})
        elif argv[3] == "folder":
            for i in range(4):
                image_io.save_png(
                    str(source / f"{i}.png"), rng.integers(0, 256, (80, 72, 3), np.uint8)
                )
        proc = _run(argv, tmp_path)
        assert proc.returncode == 0, (argv, proc.stderr[-2000:])
        with np.load(tmp_path / argv[argv.index("--out") + 1]) as f:
            assert f["x_train"].dtype == np.uint8 and f["x_train"].ndim == 4


def test_readme_convert_commands_parse(tmp_path):
    """Each `python -m score_sde.convert` line: its flags and config load, and with the source
    not downloaded the one error names the --source path (nothing else is wrong)."""
    commands = [a for a in _all_commands() if _kind(a) == "convert"]
    assert len(commands) >= 2
    for argv in commands:
        proc = _run(argv, tmp_path)
        source = argv[argv.index("--source") + 1]
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
        assert lines[0].startswith("error: ") and source in lines[0], lines[0]
        assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_readme_phema_commands_run(tmp_path):
    """Each `python -m score_sde.phema` line, run as written on a tiny run (the toy, 40 steps,
    the README's widths snapshotted every 10 steps) at its --workdir: every --std becomes a work
    directory score_sde.load reads."""
    import io

    import score_sde
    from score_sde.run import modes
    from tests.helpers import tiny_config

    commands = [a for a in _all_commands() if _kind(a) == "phema"]
    assert commands
    for argv in commands:
        workdir = tmp_path / argv[argv.index("--workdir") + 1]
        fields = {"training.n_iters": 40, "training.phema_stds": (0.05, 0.1),
                  "training.phema_freq": 10}  # fmt: skip
        modes.run("train", tiny_config("launch", **fields), str(workdir), stream=io.StringIO())
        proc = _run(argv, tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        out = tmp_path / argv[argv.index("--out") + 1]
        stds = [argv[i + 1] for i, a in enumerate(argv) if a == "--std"]
        assert sorted(p.name for p in out.iterdir()) == sorted(f"std-{s}" for s in stds)
        assert score_sde.load(str(out / f"std-{stds[0]}")).step == 40


@pytest.mark.parametrize(
    "argv",
    [a for a in _all_commands() if _kind(a) == "benchmark"],
    ids=lambda a: " ".join(a)[:60],
)
def test_readme_benchmark_flags_exist(argv):
    """Benchmarks measure (not tests): their README flags must be ones the script accepts."""
    if argv[0] == "bash":
        import subprocess

        proc = subprocess.run(["bash", argv[1], "--help"], cwd=ROOT, capture_output=True, text=True)
    else:
        proc = _run([argv[0], argv[1], "--help"], ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for flag in (a.split("=")[0] for a in argv[2:] if a.startswith("--")):
        assert flag in proc.stdout, (flag, proc.stdout[-2000:])


def test_published_checkpoint_table():
    """Every row of the README's published-checkpoint table names a config whose parameter layout
    tests/convert/test_convert_original.py proves equal to the original's (a randomly initialised
    checkpoint of that layout converts), and its FID column is a number with its sample size or
    says why there is none."""
    import gzip
    import json

    text = (ROOT / "README.md").read_text()
    head = "| published checkpoint | `--config=` |"
    rows = text[text.index(head) :].split("\n\n")[0].splitlines()[2:]
    fixture = json.load(gzip.open(ROOT / "tests" / "assets" / "original_param_trees.json.gz", "rt"))
    assert len(rows) >= 10
    for row in rows:
        name, config_name, _, _, ours = (c.strip() for c in row.strip("|").split("|"))
        assert f"{config_name}.py" in fixture["configs"], row
        assert name.split("/")[0] == config_name.split("/")[0], row  # the same SDE
        assert ours == "not obtainable here" or re.fullmatch(r"[\d.]+ \(\d[\d,]* samples\)", ours)
