"""The command line: `--config.<section>.<field>=VALUE` overrides, parsed into the config's types,
and the one-line `error:` every entry point prints for bad input."""

from __future__ import annotations

import ast
import dataclasses
import sys
import types
import typing
from collections.abc import Mapping

from score_sde.config.checks import did_you_mean
from score_sde.config.families import model_class
from score_sde.config.reader import (
    _as_dict,
    _coerce,
    _example,
    _type_name,
    field_hint,
    too_large,
)
from score_sde.config.sections import SECTIONS

EXIT_BAD_INPUT = 2


def fail(message) -> typing.NoReturn:
    """Prints `error: <message>` as one line on stderr and exits with status 2 (bad input)."""
    print("error: " + " ".join(str(message).split()), file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)


def parse_value(text: str, hint):
    """A command-line value as `hint`: ints, floats, True/False, tuples like (1,2,2); None for
    optional fields; strings as given."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if text in ("None", "none", ""):
            return None
        (hint,) = [a for a in typing.get_args(hint) if a is not type(None)]
        origin = typing.get_origin(hint)
    if hint is str:
        return text
    if hint is float and text.strip().lower() in ("nan", "inf", "-inf", "+inf"):
        return float(text)  # read, so that the section's check names the field: "must be finite"
    if hint is bool:
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise TypeError
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        if origin is not tuple:
            raise TypeError from None
        try:  # a bare comma list: 1,2,2
            value = tuple(ast.literal_eval(v) for v in text.split(",") if v.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            raise TypeError from None
    if origin is tuple and not isinstance(value, tuple | list):
        value = (value,)
    return _coerce(value, hint)


def _override_example(hint, current) -> str:
    if typing.get_origin(hint) is tuple or isinstance(current, tuple | list):
        items = current if isinstance(current, tuple | list) and current else (1, 2)
        return '"(' + ",".join(repr(v) for v in items) + (',)"' if len(items) == 1 else ')"')
    if current is None or current is dataclasses.MISSING:
        return _example(hint, dataclasses.MISSING)
    return str(current)


def apply_overrides(config, overrides: Mapping[str, str]) -> dict:
    """The config (ConfigDict or dict) as a nested dict with `--config.<section>.<field>=TEXT`
    overrides applied. Each override must name a field of its section's dataclass (for
    config.model, of the family the final config.model.name selects)."""
    raw = _as_dict(config)
    model_name = overrides.get("model.name", (raw.get("model") or {}).get("name"))
    for path, text in overrides.items():
        flag = f"--config.{path}={text}"
        if path == "seed":
            try:
                raw["seed"] = int(text)
            except ValueError:
                raise ValueError(
                    f"{flag}: config.seed takes an int, e.g. --config.seed=42"
                ) from None
            continue
        name, _, field = path.partition(".")
        if name not in SECTIONS:
            hint = did_you_mean(name, [*SECTIONS, "seed"])
            raise ValueError(
                f"{flag}: the config has no section {name!r}{hint}; sections: seed, "
                f"{', '.join(SECTIONS)}"
            )
        cls = model_class(model_name) if name == "model" else SECTIONS[name]
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if field not in fields:
            hint = field_hint(name, field, fields)
            which = f" (model {model_name!r})" if name == "model" else ""
            raise ValueError(
                f"{flag}: config.{name}{which} has no field {field!r}{hint}; fix the spelling "
                f"(known: {', '.join(sorted(fields))})"
            )
        hint_type = typing.get_type_hints(cls)[field]
        try:
            value = parse_value(text, hint_type)
        except OverflowError:
            raise ValueError(f"{flag}: {too_large(f'config.{name}.{field}', text)}") from None
        except TypeError:
            current = (raw.get(name) or {}).get(field, fields[field].default)
            raise ValueError(
                f"{flag}: config.{name}.{field} takes a value of type {_type_name(hint_type)}; "
                f"pass e.g. --config.{name}.{field}={_override_example(hint_type, current)}"
            ) from None
        section = raw.setdefault(name, {})
        if not isinstance(section, dict):
            raise ValueError(f"{flag}: config.{name} is not a section")
        section[field] = value
    return raw


HELP_FLAGS = ("-h", "--help", "-help", "--helpshort", "--helpfull")


def answer_help(argv: list[str], doc: str, flag_values, names: list[str]) -> None:
    """When `argv` asks for help: prints `doc` (the entry point's usage) and the flags `names`
    of absl's `flag_values` with their meaning and default, then exits 0 (absl's own --help
    exits 1 and lists only its own flags)."""
    if not set(argv) & set(HELP_FLAGS):
        return
    lines = [doc.strip(), "", "flags:"]
    for name in names:
        flag = flag_values[name]
        lines.append(f"  --{name}: {flag.help} (default: {flag.default!r})")
    print("\n".join(lines))
    sys.exit(0)


def split_argv(argv: list[str], default_path: str) -> tuple[str, dict[str, str], list[str]]:
    """(config path, {field path: text}, the other arguments) of a command line: `--config=PATH`
    or `--config PATH`, and `--config.<section>.<field>=VALUE` (or `... VALUE`; a bare boolean
    `--config.<section>.<field>` means True)."""
    path, overrides, rest = default_path, {}, []
    i = 0
    while i < len(argv):
        arg = argv[i]
        has_value = i + 1 < len(argv) and not argv[i + 1].startswith("--")
        if arg == "--config":
            if has_value:
                path, i = argv[i + 1], i + 1
        elif arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        elif arg.startswith("--config."):
            key, eq, value = arg[len("--config.") :].partition("=")
            if not eq:
                value, i = (argv[i + 1], i + 1) if has_value else ("True", i)
            overrides[key] = value
        else:
            rest.append(arg)
        i += 1
    return path, overrides, rest
