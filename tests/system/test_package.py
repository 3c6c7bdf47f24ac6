"""The pip-installable package: the wheel holds every module and every shipped config, and the
installed `score-sde` command runs from any directory with configs given by name.

The wheel is built from this checkout and installed into a fresh venv in a temporary directory;
the venv borrows the dependencies (not score_sde) from the test interpreter's site-packages
through a path entry (no downloads; the editable install's finder is not loaded), and the command
runs outside the checkout, so nothing of its layout (configs/ next to score_sde/, the repo root on
sys.path) can help it.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import sysconfig
import zipfile

import pytest

from tests.helpers import ROOT


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(wheel path, the fresh venv's directory)."""
    out = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", str(ROOT), "-w", str(out / "dist")],
        check=True,
        cwd=out,
    )
    (wheel,) = (out / "dist").glob("score_sde-*.whl")
    venv = out / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    pathlib.Path(site, "borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"])
    subprocess.run([*pip, "--python", str(python), "install", "--no-deps", str(wheel)], check=True)
    return wheel, venv


def _run(venv, args, cwd):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["JAX_PLATFORMS"] = "cpu"
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_the_wheel_holds_every_module_and_config(installed):
    wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "score_sde").rglob("*.py")}
    configs = {
        "score_sde/configs/" + p.relative_to(ROOT / "configs").as_posix()
        for p in (ROOT / "configs").rglob("*.py")
    }
    assert modules and configs
    assert not (modules | configs) - names, sorted((modules | configs) - names)
    assert not any(n.startswith(("tests/", "configs/", "benchmarks/")) for n in names)


@pytest.mark.slow
def test_the_installed_command_runs_outside_the_checkout(installed, tmp_path):
    _, venv = installed
    where = _run(
        venv,
        [
            str(venv / "bin" / "python"),
            "-c",
            "import score_sde.config as c; print(c.__file__, c.configs_dir())",
        ],
        tmp_path,
    )
    module, configs = where.stdout.split()
    assert module.startswith(str(venv)) and configs.startswith(str(venv))
    assert configs.endswith(os.path.join("site-packages", "score_sde", "configs"))

    script = venv / "bin" / "score-sde"
    name = _run(venv, [str(script), "--config=vp/cifar10_ddpmpp_continuous", "--dry_run"], tmp_path)
    assert name.returncode == 0, name.stderr[-2000:]
    assert "ncsnpp with 61," in name.stdout  # DDPM++ cont.: 61.8 M parameters

    workdir = tmp_path / "run"
    train = _run(
        venv,
        [
            str(script),  # the embedded default (configs/default.py), shortened
            f"--workdir={workdir}",
            "--config.training.n_iters=40",
            "--config.training.snapshot_freq=40",
            "--config.training.log_freq=20",
        ],
        tmp_path,
    )
    assert train.returncode == 0, train.stderr[-2000:]
    assert (workdir / "config.json").is_file()
    assert sorted(os.listdir(workdir / "checkpoints")) == ["40"]

    sample = _run(  # the default's config by name, in another mode
        venv, [str(script), "--config=toy/gmm", f"--workdir={workdir}", "--mode=sample"], tmp_path
    )
    assert sample.returncode == 0, sample.stderr[-2000:]
    assert list((workdir / "samples").glob("ckpt_40_*.npz"))

    bad = _run(venv, [str(script), "--config=toy/gmn"], tmp_path)
    assert bad.returncode == 2
    assert "did you mean toy/gmm" in bad.stderr and "Traceback" not in bad.stderr


def test_gpu_extras_ask_for_the_same_jax_range():
    """`pip install score_sde[cuda12]` may not pull a JAX outside the range the code is tested
    with: each GPU extra names jax[<extra>] with exactly the core dependency's specifier."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (core,) = [d for d in project["dependencies"] if d.startswith("jax")]
    spec = core.removeprefix("jax")
    for extra in ("cuda12", "cuda13"):
        assert project["optional-dependencies"][extra] == [f"jax[{extra}]{spec}"]


def test_the_gcs_extra_the_readme_names_is_what_the_tests_run_against():
    """README's `pip install -e ".[gcs]"` names an extra that exists, and the test extra installs
    the same gcsfs requirement (the emulator tests use the client a pod user gets)."""
    import re
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    named = set(re.findall(r'pip install -e "\.\[(\w+)\]"', (ROOT / "README.md").read_text()))
    assert "gcs" in named and named <= set(extras)
    assert set(extras["gcs"]) <= set(extras["test"])
