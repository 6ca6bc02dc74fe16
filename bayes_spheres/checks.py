"""The messages of settings that check themselves: every bad value is one line,
``key=value: must be ...``, raised as :class:`SettingError` so that whoever built the settings
from a config can put the node's full key in front (``inference.slice.trajectory=-1: ...``,
:mod:`bayes_spheres.config`)."""

from __future__ import annotations

import math
from enum import StrEnum
from typing import TypeVar

E = TypeVar("E", bound=StrEnum)


class SettingError(ValueError):
    """One bad setting: ``key``, the ``value`` given and ``rule``, what is allowed."""

    def __init__(self, key: str, value: object, rule: str) -> None:
        self.key, self.value, self.rule = key, value, rule
        super().__init__(f"{key}={value!r}: {rule}")

    def under(self, prefix: str) -> SettingError:
        """The same error with its key inside the config node ``prefix``."""
        return SettingError(f"{prefix}.{self.key}" if prefix else self.key, self.value, self.rule)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def integer(key: str, value: object, minimum: int = 0) -> int:
    """``value`` as an integer ``>= minimum``."""
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= minimum):
        raise SettingError(key, value, f"must be an integer >= {minimum}")
    return value


def positive(key: str, value: object) -> float:
    """``value`` as a finite number ``> 0``."""
    if not (_is_number(value) and math.isfinite(value) and value > 0):
        raise SettingError(key, value, "must be a finite number > 0")
    return float(value)


def at_least(key: str, value: object, minimum: float) -> float:
    """``value`` as a finite number ``>= minimum``."""
    if not (_is_number(value) and math.isfinite(value) and value >= minimum):
        raise SettingError(key, value, f"must be a finite number >= {minimum}")
    return float(value)


def fraction(key: str, value: object) -> float:
    """``value`` as a number in the open interval (0, 1)."""
    if not (_is_number(value) and 0 < value < 1):
        raise SettingError(key, value, "must be a number in (0, 1)")
    return float(value)


def unit_interval(key: str, value: object) -> float:
    """``value`` as a number in the half-open interval [0, 1) (a momentum, a decay)."""
    if not (_is_number(value) and 0 <= value < 1):
        raise SettingError(key, value, "must be a number in [0, 1)")
    return float(value)


def optional_integer(key: str, value: object, minimum: int = 0) -> int | None:
    """``value`` as None or an integer ``>= minimum``."""
    if value is None:
        return None
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= minimum):
        raise SettingError(key, value, f"must be null or an integer >= {minimum}")
    return value


def flag(key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise SettingError(key, value, "must be true or false")
    return value


def choice(key: str, value: object, kind: type[E]) -> E:
    """``value`` as a member of the string enum ``kind``."""
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise SettingError(key, value, f"must be one of {allowed}") from None
