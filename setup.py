"""Package discovery (everything else is in pyproject.toml): every package under score_sde/, and
the shipped configs/ installed as score_sde.configs (`--config=NAME` finds them there)."""

from setuptools import find_namespace_packages, find_packages, setup

configs = [
    "score_sde." + p
    for p in find_namespace_packages(include=["configs", "configs.*"], exclude=["*__pycache__"])
]
setup(
    packages=find_packages(include=["score_sde", "score_sde.*"]) + configs,
    package_dir={"score_sde.configs": "configs"},
)
