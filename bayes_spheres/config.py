"""Checks a composed config before any work and resolves it into callables.

Every error is one line that names the bad value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import math
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from hydra.utils import get_class, get_method
from omegaconf import DictConfig, OmegaConf

from bayes_spheres.models import ModelName, SphereModel

DTYPES = {"float64": torch.float64, "float32": torch.float32}
DEVICES = ("cpu", "cuda")
# Keys of a group's config that describe the entry rather than being passed to its function.
META_KEYS = frozenset({"_target_", "name", "models", "resample", "attack_step_size"})


class ConfigError(ValueError):
    """A bad configuration value, caught before any work is done."""


@dataclass(frozen=True)
class Plan:
    """A validated run: what to build and call, with which settings."""

    model: SphereModel
    fit: Callable[..., Any]
    fit_settings: dict[str, Any]
    attack: Callable[..., Any]
    attack_settings: dict[str, Any]
    inference_name: str
    attack_name: str
    resample: bool
    dtype: torch.dtype
    device: torch.device
    # More attacks on the same ensemble, reported beside the main one: name -> (fn, settings).
    extra_attacks: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = dataclasses.field(
        default_factory=dict
    )


def _positive_int(where: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where}={value!r}: must be an integer >= {minimum}")
    return value


def _positive_float(where: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (math.isfinite(value) and value > 0)
    ):
        raise ConfigError(f"{where}={value!r}: must be a positive finite number")
    return float(value)


def _target(group: str, node: DictConfig) -> Callable[..., Any]:
    target = node.get("_target_")
    if not target:
        raise ConfigError(f"{group}: no _target_ (the function or class this config builds)")
    try:
        return get_class(target) if group == "model" else get_method(target)
    except Exception as err:
        raise ConfigError(f"{group}._target_={target!r}: cannot import ({err})") from err


def _settings(
    group: str, node: DictConfig, fn: Callable[..., Any], reserved: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The config's settings for ``fn``; an unknown key is an error naming the allowed ones."""
    settings = {
        k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if k not in META_KEYS
    }
    params = inspect.signature(fn).parameters
    allowed = [n for n in params if n not in reserved and n != "self"]
    hints = typing.get_type_hints(fn.__init__ if isinstance(fn, type) else fn)
    for key, value in settings.items():
        if key not in allowed:
            raise ConfigError(f"{group}.{key}: unknown setting; allowed: {', '.join(allowed)}")
        choices = _type_in(hints.get(key), lambda t: issubclass(t, enum.Enum))
        if choices is not None and value not in [c.value for c in choices]:
            allowed_values = ", ".join(str(c.value) for c in choices)
            raise ConfigError(f"{group}.{key}={value!r}: allowed: {allowed_values}")
        nested = _type_in(hints.get(key), dataclasses.is_dataclass)
        if nested is not None and isinstance(value, dict):
            names = [f.name for f in dataclasses.fields(nested)]
            for sub in value:
                if sub not in names:
                    raise ConfigError(
                        f"{group}.{key}.{sub}: unknown setting; allowed: {', '.join(names)}"
                    )
            settings[key] = nested(**value)
    return settings


def _type_in(hint: Any, wanted: Callable[[type], bool]) -> type | None:
    """The class in a type hint such as ``Settings | None`` for which ``wanted`` holds."""
    for candidate in (hint, *typing.get_args(hint)):
        if isinstance(candidate, type) and wanted(candidate):
            return candidate
    return None


def validate(cfg: DictConfig) -> Plan:
    """Check ``cfg`` and resolve its groups; raises :class:`ConfigError` on the first problem."""
    for key in ("data", "model", "inference", "attack"):
        if key not in cfg:
            raise ConfigError(f"config has no '{key}' group")
    d = cfg.data
    _positive_int("data.dim", d.dim)
    _positive_int("data.n_train", d.n_train, minimum=2)
    _positive_int("data.n_val", d.n_val)
    r_in = _positive_float("data.r_inner", d.r_inner)
    r_out = _positive_float("data.r_outer", d.r_outer)
    if r_in >= r_out:
        raise ConfigError(
            f"data.r_inner={d.r_inner!r} must be smaller than data.r_outer={d.r_outer!r}"
        )
    _positive_int("members", cfg.members)
    _positive_int("seed", cfg.seed, minimum=0)
    if cfg.get("threads") is not None:
        _positive_int("threads", cfg.threads)
    if cfg.dtype not in DTYPES:
        raise ConfigError(f"dtype={cfg.dtype!r}: allowed: {', '.join(DTYPES)}")
    if cfg.device not in DEVICES:
        raise ConfigError(f"device={cfg.device!r}: allowed: {', '.join(DEVICES)}")
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda': no CUDA device is available here; use device=cpu")

    model_cls = _target("model", cfg.model)
    model_settings = _settings("model", cfg.model, model_cls)
    try:
        model = model_cls(**model_settings)
    except (TypeError, ValueError) as err:
        raise ConfigError(str(err)) from err
    if not isinstance(model, SphereModel):
        raise ConfigError(f"model._target_={cfg.model._target_!r} is not a SphereModel")

    fit = _target("inference", cfg.inference)
    fit_settings = _settings(
        "inference", cfg.inference, fit, reserved=("model", "data", "members", "seed", "progress")
    )
    inference_name = cfg.inference.get("name") or fit.__module__.rsplit(".", 1)[-1]
    # `models` lists the built-in models an inference method takes; a model added by a user
    # (a SphereModel subclass outside ModelName) is the user's to pair, so it is not refused.
    supported = list(cfg.inference.get("models") or [m.value for m in ModelName])
    built_in = str(model.name) in {m.value for m in ModelName}
    if built_in and model.name not in supported:
        raise ConfigError(
            f"model={model.name} with inference={inference_name} is not "
            f"supported; models for {inference_name}: {', '.join(supported)}"
        )

    attack, attack_settings = _attack("attack", cfg.attack)
    attack_name = cfg.attack.get("name") or attack.__name__
    extra = cfg.get("extra_attacks") or {}
    extra_attacks = {str(k): _attack(f"extra_attacks.{k}", node) for k, node in extra.items()}

    return Plan(
        model=model,
        fit=fit,
        fit_settings=fit_settings,
        attack=attack,
        attack_settings=attack_settings,
        inference_name=inference_name,
        attack_name=attack_name,
        resample=bool(cfg.inference.get("resample", False)),
        dtype=DTYPES[cfg.dtype],
        device=torch.device(cfg.device),
        extra_attacks=extra_attacks,
    )


def _attack(where: str, node: DictConfig) -> tuple[Callable[..., Any], dict[str, Any]]:
    """An attack config (``attack`` or one of ``extra_attacks``): its function and settings."""
    attack = _target(where, node)
    settings = _settings(where, node, attack, reserved=("ensemble", "radii", "seed", "progress"))
    for key in ("restarts_per_sphere", "max_steps", "patience"):
        if key in settings:
            _positive_int(f"{where}.{key}", settings[key])
    if "step_size" in settings:
        _positive_float(f"{where}.step_size", settings["step_size"])
    return attack, settings
