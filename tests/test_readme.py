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
