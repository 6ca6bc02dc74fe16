"""Checks of an attack's settings, one ValueError ``"key=value: what is allowed"`` for the
first bad one. Each attack states its rules beside it (``check_pgd_settings`` in
:mod:`.gradient`, ``check_simplex_settings`` in :mod:`.mirror`); ``bayes_spheres.config``
calls them on the configured settings before any work, and the attack on its arguments."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any


def with_defaults(attack: Callable[..., Any], settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` over the defaults of ``attack``'s signature."""
    parameters = inspect.signature(attack).parameters.values()
    defaults = {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}
    return defaults | settings


def require_int(key: str, value: Any, minimum: int = 1) -> None:
    """An attack setting that counts something: a ValueError ``"key=value: ..."`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{key}={value!r}: must be an integer >= {minimum}")


def require_positive(key: str, value: Any, minimum: float | None = None) -> None:
    """A positive finite number (``>= minimum`` if given): a ValueError ``"key=value: ..."``."""
    ok = (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and (value > 0 if minimum is None else value >= minimum)
    )
    if not ok:
        what = "a positive finite number" if minimum is None else f"a finite number >= {minimum}"
        raise ValueError(f"{key}={value!r}: must be {what}")


def require_bool(key: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{key}={value!r}: must be true or false")
