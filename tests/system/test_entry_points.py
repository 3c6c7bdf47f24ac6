"""Every `python -m score_sde.*` entry point answers --help (and -h) with its usage and exit 0:
found by reading the package (a module with `if __name__ == "__main__"` or a `__main__.py`), so
a new entry point is covered without editing this file."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import ROOT

PACKAGE = ROOT / "score_sde"


def _entry_points() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ("score_sde", *path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__main__":
            found.append(".".join(parts[:-1]))
        elif 'if __name__ == "__main__"' in path.read_text():
            found.append(".".join(parts))
    return found


ENTRY_POINTS = _entry_points()


def test_the_walk_finds_the_entry_points():
    assert {
        "score_sde.convert",
        "score_sde.evaluation.reference_stats",
        "score_sde.data.prepare",
    } <= set(ENTRY_POINTS)


@pytest.mark.parametrize("module", ENTRY_POINTS)
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_prints_the_usage_and_exits_0(module, flag):
    proc = subprocess.run(
        [sys.executable, "-m", module, flag],
        cwd=PACKAGE.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    text = proc.stdout.lower()
    assert "usage" in text or "python -m " + module in text, proc.stdout[:1000]
    assert "--" in proc.stdout and "Traceback" not in proc.stderr
