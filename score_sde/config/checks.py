"""The value checks every section uses: one ValueError naming the field, the value and the rule."""

from __future__ import annotations

import difflib
import math


def _one_of(field: str, value, valid) -> None:
    if value not in valid:
        raise ValueError(f"{field} ({value!r}) must be one of {', '.join(map(repr, valid))}")


def _positive(field: str, value) -> None:
    if not value > 0:
        raise ValueError(f"{field} ({value}) must be positive")


def _fraction(field: str, value: float) -> None:
    """value in [0, 1): EMA rates, dropout probabilities, Adam's beta1 (NaN fails too)."""
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{field} ({value}) must lie in [0, 1)")


def _finite(field: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{field} ({value}) must be a finite number")


def did_you_mean(key: str, known, prefix: str = "config.", n: int = 1) -> str:
    """' (did you mean config.model.nf?)' for the names of `known` closest to `key`, or ''."""
    close = difflib.get_close_matches(key, list(known), n=n)
    return f" (did you mean {', '.join(prefix + c for c in close)}?)" if close else ""
