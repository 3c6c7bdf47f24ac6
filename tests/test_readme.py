"""README's Python examples run as written and their assertions hold.

Blocks fenced as ```python are executed, each in a fresh namespace from the repository root; a
block whose first line is `# needs: ...` (prepared datasets, downloaded weights) is skipped.
"""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example(index, tmp_path, monkeypatch):
    code = BLOCKS[index]
    if code.startswith("# needs:"):
        pytest.skip(code.splitlines()[0])
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("SCORE_SDE_README_TMP", str(tmp_path))
    exec(compile(code, f"README.md block {index}", "exec"), {"__name__": "__readme__"})


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
