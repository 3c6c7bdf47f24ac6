"""`score-sde --help` and `score-sde MODE --help`: what they list is real (modes, fields, example
commands that load), and a leading mode word means --mode."""

import dataclasses
import re
import shlex

import pytest

from score_sde import cli
from score_sde import config as config_lib
from score_sde.config import split_argv
from score_sde.run import modes


def _help(capsys, *args) -> str:
    with pytest.raises(SystemExit) as e:
        cli.main(["score-sde", *args])
    assert e.value.code == 0
    return capsys.readouterr().out


def test_help_lists_every_mode_the_main_flags_and_examples(capsys):
    out = _help(capsys, "--help")
    assert out.startswith("usage: score-sde [MODE]")
    for mode in modes.MODES:
        assert re.search(rf"^  {mode} +\S", out, re.M), mode
    for needle in ("--config=CONFIG", "--workdir=DIR", "--config.SECTION.FIELD=VALUE", "examples:"):
        assert needle in out
    assert _help(capsys, "-h") == out


@pytest.mark.parametrize("mode", modes.MODES)
def test_each_mode_has_its_own_help(mode, capsys):
    out = _help(capsys, mode, "--help")
    assert out.startswith(f"usage: score-sde {mode} ")
    assert f"  score-sde {mode} " in out  # its example
    assert _help(capsys, f"--mode={mode}", "--help") == out


def _field_names() -> set[str]:
    names = set()
    for section in dataclasses.fields(config_lib.Config):
        if dataclasses.is_dataclass(section.type) or isinstance(section.type, str):
            cls = getattr(config_lib, str(section.type).split(".")[-1], None)
            if cls is not None and dataclasses.is_dataclass(cls):
                names |= {f"{section.name}.{f.name}" for f in dataclasses.fields(cls)}
    return names


def _all_help() -> str:
    return "\n".join([cli.usage(), *(cli.mode_help(m) for m in cli.MODE_HELP)])


def test_every_field_the_help_names_exists():
    names = _field_names()
    assert "training.n_iters" in names and "model.ema_rate" in names
    named = set(re.findall(r"--config\.([a-z_]+\.[A-Za-z_]+)", _all_help()))
    assert len(named) > 20
    assert named <= names, named - names


def test_every_example_of_the_help_loads_its_config():
    lines = [
        ln.split("#")[0] for ln in _all_help().splitlines() if ln.strip().startswith("score-sde")
    ]
    assert len(lines) >= 3 + len(cli.MODE_HELP)
    known = {"--mode", "--workdir"}
    for line in lines:
        args = cli._mode_and_help(shlex.split(line)[1:])
        path, overrides, rest = split_argv(args, cli.DEFAULT_CONFIG)
        config_lib.load(path, overrides)  # raises on an unknown config or field
        assert {a.split("=")[0] for a in rest} <= known, line


def test_a_leading_mode_word_is_the_mode_flag():
    assert cli._mode_and_help(["sample", "--workdir=w"]) == ["--mode=sample", "--workdir=w"]
    assert cli._mode_and_help(["--workdir=w", "sample"]) == ["--workdir=w", "sample"]
