"""`score-sde fields [SECTION]`: one line per config field (section.field, type, default,
meaning), generated from the section dataclasses; reading it starts no JAX."""

from __future__ import annotations

import dataclasses
import pathlib
import subprocess
import sys

import pytest

from score_sde import cli
from score_sde.config import fields
from score_sde.config.families import ModelConfig
from score_sde.config.sections import SECTIONS

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _expected() -> list[tuple[str, str, dataclasses.Field]]:
    """(section.field, tag, field) of every dataclass field: the sections', then each model
    family's own."""
    out = []
    for name, cls in SECTIONS.items():
        out += [(f"{name}.{f.name}", "", f) for f in dataclasses.fields(cls)]
    common = {f.name for f in dataclasses.fields(ModelConfig)}
    for family, cls in fields.MODEL_FAMILIES.items():
        out += [
            (f"model.{f.name}", f"[{family}] ", f)
            for f in dataclasses.fields(cls)
            if f.name not in common
        ]
    return out


def _tag(meaning: str) -> str:
    """'[ncsnpp] ' of a model family's field, '' otherwise."""
    return meaning.split("] ")[0] + "] " if meaning.startswith("[") else ""


def test_every_field_appears_once_with_its_type_default_and_meaning():
    rows = fields.rows()
    assert rows[0][:3] == ("seed", "int", "required")
    keyed = {(row[0], _tag(row[3])): row for row in rows[1:]}
    expected = _expected()
    assert len(rows) == 1 + len(expected) == len(keyed) + 1  # each (field, family) exactly once
    for name, tag, f in expected:
        _, type_text, default, meaning = keyed[name, tag]
        if f.default is dataclasses.MISSING:
            assert default == "required", name
        else:
            assert default in (repr(f.default), str(f.default)), (name, default, f.default)
        assert type_text and meaning.removeprefix(tag).strip(), name


def test_every_meaning_belongs_to_a_field():
    """No stale entry: each meaning names a field that exists (model: of some family)."""
    for section, meanings in fields.MEANINGS.items():
        if section == "seed":
            continue
        classes = [SECTIONS[section]]
        if section == "model":
            classes += list(fields.MODEL_FAMILIES.values())
        known = {f.name for c in classes for f in dataclasses.fields(c)}
        assert set(meanings) == known, (section, set(meanings) ^ known)


def test_table_lines_and_types():
    text = fields.table()
    lines = text.splitlines()
    assert len(lines) == len(fields.rows())
    assert any(line.split()[:3] == ["sampling.num_steps", "int", "0"] for line in lines)
    assert any(line.split()[:4] == ["data.path", "str", "|", "None"] for line in lines)
    assert any(line.split()[:5] == ["model.ch_mult", "tuple[int,", "...]", "(1,", "2,"]
               for line in lines)  # fmt: skip
    assert any(line.split()[:3] == ["sampling.S_tmax", "float", "inf"] for line in lines)


def test_a_section_lists_only_its_fields(capsys):
    assert fields.main(["sampling"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split()[0] for line in lines]
    assert names == [f"sampling.{f.name}" for f in dataclasses.fields(SECTIONS["sampling"])]


@pytest.mark.parametrize("args", [["bogus"], ["sampling", "eval"]])
def test_a_bad_section_is_one_error_line_and_exit_2(capsys, args):
    with pytest.raises(SystemExit) as e:
        cli.main(["score-sde", "fields", *args])
    assert e.value.code == 2
    out = capsys.readouterr()
    assert out.out == "" and len(out.err.strip().splitlines()) == 1
    assert out.err.startswith("error: ")
    if args == ["bogus"]:
        assert "'bogus'" in out.err and "sampling, eval, optim, model" in out.err


def test_help_prints_the_usage_and_exits_0(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["score-sde", "fields", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: score-sde fields [SECTION]") and "classifier" in out


def test_the_command_imports_no_jax():
    code = (
        "import sys\n"
        "from score_sde import cli\n"
        "try:\n"
        "    cli.main(['score-sde', 'fields', 'sampling'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "heavy = [m for m in ('jax', 'flax', 'diffrax', 'orbax', 'tensorflow') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines()[0].startswith("sampling.method ")
    assert proc.stdout.splitlines()[-1] == "HEAVY []", proc.stdout[-500:]
    module = subprocess.run(
        [sys.executable, "-m", "score_sde.cli", "fields", "optim"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert module.returncode == 0 and len(module.stdout.splitlines()) == 8, module.stderr
