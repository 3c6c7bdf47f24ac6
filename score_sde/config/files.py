"""Config files: the shipped configs by name, running a file's get_config(), and `load`."""

from __future__ import annotations

import os
import types
from collections.abc import Mapping

from score_sde.config.checks import did_you_mean
from score_sde.config.command_line import apply_overrides
from score_sde.config.reader import from_config
from score_sde.config.sections import Config


def configs_dir() -> str:
    """The shipped configs: `configs/` of a checkout, or `score_sde/configs/` of an installed wheel."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # score_sde/
    for root in (os.path.join(os.path.dirname(here), "configs"), os.path.join(here, "configs")):
        if os.path.isfile(os.path.join(root, "default.py")):
            return root
    raise ValueError(f"the shipped configs are missing next to {here}; reinstall score_sde")


def shipped_configs() -> list[str]:
    """Names accepted by `--config=NAME`: every shipped file defining get_config(), e.g.
    'vp/cifar10_ddpmpp_continuous', sorted."""
    root, names = configs_dir(), []
    for dirpath, _, files in os.walk(root):
        for f in files:
            path = os.path.join(dirpath, f)
            if f.endswith(".py") and "def get_config(" in open(path).read():
                names.append(os.path.relpath(path, root)[: -len(".py")].replace(os.sep, "/"))
    return sorted(names)


def resolve_config_path(path: str) -> str:
    """A config file's path: `path` itself when it is a file, else the shipped config named `path`
    ('toy/gmm', 'configs/toy/gmm.py' from any directory). One ValueError naming the choices."""
    if os.path.isfile(path):
        return path
    if not path.strip():
        raise ValueError(
            "--config is empty; pass a config file (--config=configs/toy/gmm.py) or a shipped "
            "name (--config=toy/gmm), or leave --config out for the default"
        )
    if os.path.isdir(path):
        inside = sorted(f for f in os.listdir(path) if f.endswith(".py"))[:3]
        e_g = f" (e.g. --config={os.path.join(path, inside[0])})" if inside else ""
        raise ValueError(
            f"--config={path} is a directory; pass one Python file in it that defines "
            f"get_config(){e_g}"
        )
    name = path.removeprefix("configs/").removesuffix(".py")
    candidate = os.path.join(configs_dir(), *name.split("/")) + ".py"
    if os.path.isfile(candidate):
        return candidate
    hint = did_you_mean(name, shipped_configs(), prefix="", n=3)
    raise ValueError(
        f"--config={path}: no such config file and no shipped config of that name{hint}. Pass a "
        "Python file defining get_config() "
        "(--config=configs/toy/gmm.py) or a shipped name (--config=toy/gmm)"
        "; the list: python -c 'from score_sde import config; print(config.shipped_configs())'"
    )


def _make_configs_importable() -> None:
    """Config files import their bases as `configs.*`: that package is the shipped configs
    directory wherever the process runs (a checkout's root need not be on sys.path)."""
    import importlib.util
    import sys

    if "configs" in sys.modules:
        return
    if importlib.util.find_spec("configs") is None:
        package = types.ModuleType("configs")
        package.__path__ = [configs_dir()]
        sys.modules["configs"] = package


def _cause(e: BaseException) -> str:
    """One line saying what a config file raised; sys.exit() in it is named as such."""
    if isinstance(e, SystemExit):
        return (
            f"it called sys.exit({e.code!r}); a config file must not exit, only define get_config()"
        )
    return " ".join(f"{type(e).__name__}: {e}".split())


def _check_no_arguments(path: str, get_config) -> None:
    """get_config() is called with no arguments: one that needs some is named with them."""
    import inspect

    try:
        inspect.signature(get_config).bind()
    except TypeError:
        raise ValueError(
            f"--config={path}: get_config{inspect.signature(get_config)} needs arguments, but it "
            "is called with none; give them defaults, or set them with --config.SECTION.FIELD"
        ) from None
    except ValueError:  # no signature (a builtin): calling it says what is wrong
        pass


def load_file(path: str):
    """Runs a config file's `get_config()` (a path, or a shipped name: resolve_config_path);
    returns its ConfigDict. One ValueError on failure."""
    import runpy

    path = resolve_config_path(path)
    _make_configs_importable()
    try:
        namespace = runpy.run_path(path)
    except (Exception, SystemExit) as e:  # any error in the user's file: reported as the cause
        raise ValueError(f"--config={path}: the config file failed to load: {_cause(e)}") from None
    get_config = namespace.get("get_config")
    if not callable(get_config):
        raise ValueError(
            f"--config={path}: the file defines no get_config() function; a config file is a "
            "Python module whose get_config() returns an ml_collections.ConfigDict"
        )
    _check_no_arguments(path, get_config)
    try:
        config = get_config()
    except (Exception, SystemExit) as e:
        raise ValueError(f"--config={path}: get_config() failed: {_cause(e)}") from None
    if not hasattr(config, "to_dict") and not isinstance(config, Mapping):
        raise ValueError(
            f"--config={path}: get_config() returned {type(config).__name__}, not an "
            "ml_collections.ConfigDict"
        )
    return config


def load(path: str, overrides: Mapping[str, str] | None = None) -> Config:
    """The typed config of file `path` with command-line overrides {"training.n_iters": "5"}."""
    return from_config(apply_overrides(load_file(path), overrides or {}))
