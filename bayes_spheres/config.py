"""Checks a composed config before any work and builds it with Hydra's ``instantiate``.

``data`` and ``model`` are class nodes; ``inference``, ``attack`` and each of
``extra_attacks`` are nodes of a settings object that checks itself as it is made and is
called later (with the data, the ensemble, the seed), or ``_partial_`` nodes of a function
(a user's quick addition; ``attack=vertex``, which has no settings); nested settings such as
``inference.optim`` are nodes of their own dataclass. What describes the inference method
rather than configuring it (``models``, ``resample``, ``attack_step_size``, optionally
``name``) sits beside it in ``method``. Every error is one line that names the bad value by
its full key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import inspect
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from hydra.core.config_store import ConfigStore
from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from bayes_spheres import checks
from bayes_spheres.attack import PGDSettings, SimplexSettings
from bayes_spheres.attack.strongest import PolishSettings
from bayes_spheres.branch_bound import CertificateSettings
from bayes_spheres.checks import SettingError
from bayes_spheres.data import SpheresSettings
from bayes_spheres.inference.bootstrap import BootstrapSettings
from bayes_spheres.inference.laplace import LaplaceSettings
from bayes_spheres.inference.map import LBFGSSettings, MAPSettings
from bayes_spheres.inference.mcmc import MCMCSettings
from bayes_spheres.inference.svi import SGDSettings, SVISettings
from bayes_spheres.kernels.settings import SliceSettings
from bayes_spheres.models import ModelName, SphereModel

DTYPES = {"float64": torch.float64, "float32": torch.float32}
DEVICES = ("cpu", "cuda")
# `log_likelihood`: how posterior.nc stores the pointwise log-likelihood (none: not at all).
LOG_LIKELIHOOD_DTYPES = ("float64", "float32", "none")
# Keys that instantiate reads itself; every other key of a node is passed to its target.
# (`_args_`, `_recursive_`, `_convert_` are not: the plan keeps keyword settings, built.)
INSTANTIATE_KEYS = frozenset({"_target_", "_partial_"})
# `method`: about the inference method, beside its `inference` node (not passed to the fit).
METHOD_KEYS = ("name", "models", "resample", "attack_step_size")
# Passed by the pipeline at call time, so never configured.
FIT_ARGS = ("model", "data", "members", "seed")
ATTACK_ARGS = ("ensemble", "radii", "seed")


def settings_node(kind: type) -> dict[str, Any]:
    """A config node that builds the settings dataclass ``kind`` with its own defaults (enums
    as their values): registered in Hydra's config store, so that a config lists no default
    of its own and every setting can be overridden on the command line."""
    node: dict[str, Any] = {"_target_": f"{kind.__module__}.{kind.__qualname__}"}
    for f in dataclasses.fields(kind):
        if f.default is not dataclasses.MISSING:
            value = f.default
            node[f.name] = value.value if isinstance(value, enum.Enum) else value
    return node


# Each `conf/inference/*.yaml` takes its settings from here (`/settings@inference: mcmc`, the
# kernel's `/settings@inference.slice: slice`, ...), and so do the certificate and the
# strongest attack's polish (`conf/config.yaml`: `settings@certificate`, `settings@polish`).
_SETTINGS = (
    ("map", MAPSettings),
    ("laplace", LaplaceSettings),
    ("lbfgs", LBFGSSettings),
    ("bootstrap", BootstrapSettings),
    ("spheres", SpheresSettings),
    ("pgd", PGDSettings),
    ("simplex", SimplexSettings),
    ("mcmc", MCMCSettings),
    ("slice", SliceSettings),
    ("svi", SVISettings),
    ("sgd", SGDSettings),
    ("certificate", CertificateSettings),
    ("polish", PolishSettings),
)
for _name, _kind in _SETTINGS:
    ConfigStore.instance().store(group="settings", name=_name, node=settings_node(_kind))


class ConfigError(ValueError):
    """A bad configuration value, caught before any work is done."""


@dataclass(frozen=True)
class Plan:
    """A validated run: what to build and call, with which settings."""

    data: SpheresSettings
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
    # The strongest attack's polish from each restart's best point
    # (bayes_spheres/attack/strongest.py).
    polish: PolishSettings = dataclasses.field(default_factory=PolishSettings)
    # The certified bound's search (bayes_spheres/branch_bound.py): time and node limits.
    certificate: CertificateSettings = dataclasses.field(default_factory=CertificateSettings)
    # dtype of posterior.nc's pointwise log-likelihood; None: not written.
    log_likelihood_dtype: str | None = "float64"


def _positive_int(where: str, value: Any, minimum: int = 1) -> int:
    """A top-level count (``members``, ``seed``, ...), in the settings' own words."""
    try:
        return checks.integer(where, value, minimum)
    except SettingError as err:
        raise ConfigError(str(err)) from err


def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


def _check_node(where: str, node: DictConfig, reserved: tuple[str, ...] = ()) -> None:
    """Check a node that ``instantiate`` will build, before it builds anything: its target
    imports, every key is one of the target's parameters (``reserved`` ones are passed at call
    time, not configured), str-enum values are among the allowed ones, and nested dataclass
    settings are nodes of their own (``_target_``), checked the same way. A ``_partial_``
    node is not called by ``instantiate``, so nothing else would catch a misspelled key."""
    target = node.get("_target_")
    if not target:
        raise ConfigError(f"{where}: no _target_ (the function or class this config builds)")
    try:
        fn = get_object(target)
    except Exception as err:
        raise ConfigError(f"{where}._target_={target!r}: cannot import ({_one_line(err)})") from err
    params = inspect.signature(fn).parameters
    allowed = [
        n
        for n, p in params.items()
        if n not in reserved and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    hints = typing.get_type_hints(fn.__init__ if isinstance(fn, type) else fn)
    for key in node:
        if key in INSTANTIATE_KEYS:
            continue
        if key not in allowed:
            raise ConfigError(f"{where}.{key}: unknown setting; allowed: {', '.join(allowed)}")
        value = node[key]
        choices = _type_in(hints.get(key), lambda t: issubclass(t, enum.Enum))
        if choices is not None and value not in [c.value for c in choices]:
            allowed_values = ", ".join(str(c.value) for c in choices)
            raise ConfigError(f"{where}.{key}={value!r}: allowed: {allowed_values}")
        nested = _type_in(hints.get(key), dataclasses.is_dataclass)
        if isinstance(value, DictConfig):
            if nested is not None and "_target_" not in value:
                raise ConfigError(
                    f"{where}.{key}: a {nested.__name__} needs "
                    f"_target_: {nested.__module__}.{nested.__qualname__}"
                )
            if "_target_" in value:
                _check_node(f"{where}.{key}", value)


def _type_in(hint: Any, wanted: Callable[[type], bool]) -> type | None:
    """The class in a type hint such as ``Settings | None`` for which ``wanted`` holds."""
    for candidate in (hint, *typing.get_args(hint)):
        if isinstance(candidate, type) and wanted(candidate):
            return candidate
    return None


def _instantiate(where: str, node: DictConfig, reserved: tuple[str, ...] = ()) -> Any:
    """``hydra.utils.instantiate(node)`` after :func:`_check_node`; a function's node must be a
    ``_partial_`` one (it is called later, with ``reserved``). A constructor's ValueError or
    TypeError is one line (the models' say ``model.<key>=<value>: ...``)."""
    _check_node(where, node, reserved)
    if reserved and node.get("_partial_") is not True:
        raise ConfigError(
            f"{where}._partial_={node.get('_partial_')!r}: must be true (the function is "
            f"called later with {', '.join(reserved)})"
        )
    try:
        return instantiate(node, _convert_="all")
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, SettingError):  # Hydra names the node that failed: its full key
            match = re.search(r"full_key: (\S+)", str(err))
            raise ConfigError(str(cause.under(match[1] if match else where))) from err
        if isinstance(cause, ValueError | TypeError):
            raise ConfigError(_one_line(cause)) from err
        raise ConfigError(f"{where}: {_one_line(err)}") from err
    except SettingError as err:
        raise ConfigError(str(err.under(where))) from err
    except (ValueError, TypeError) as err:
        raise ConfigError(_one_line(err)) from err


def _partial(where: str, node: DictConfig, reserved: tuple[str, ...]) -> functools.partial:
    """The configured function with its settings bound: ``instantiate`` of a ``_partial_`` node."""
    built = _instantiate(where, node, reserved)
    if not isinstance(built, functools.partial):
        raise ConfigError(f"{where}._target_={node._target_!r} did not give a function")
    return built


def _called_later(
    where: str, node: DictConfig, reserved: tuple[str, ...]
) -> tuple[Callable[..., Any], dict[str, Any]]:
    """An inference or attack node, called later with ``reserved``: a node of a settings
    object that checks itself as it is made and runs when called (``MCMCSettings``,
    ``PGDSettings``), or a ``_partial_`` node of a function. Returns the callable and the
    keyword settings still to pass it (none for a settings object)."""
    _check_node(where, node, reserved)
    if not isinstance(get_object(node._target_), type):  # a function: called later
        built = _partial(where, node, reserved)
        return built.func, dict(built.keywords)
    built = _instantiate(where, node)
    if not callable(built):
        raise ConfigError(f"{where}._target_={node._target_!r}: its settings are not callable")
    return built, {}


def validate(cfg: DictConfig) -> Plan:
    """Check ``cfg`` and resolve its groups; raises :class:`ConfigError` on the first problem."""
    for key in ("data", "model", "inference", "attack"):
        if key not in cfg:
            raise ConfigError(f"config has no '{key}' group")
    _positive_int("members", cfg.members)
    _positive_int("seed", cfg.seed, minimum=0)
    if cfg.get("threads") is not None:
        _positive_int("threads", cfg.threads)
    if cfg.dtype not in DTYPES:
        raise ConfigError(f"dtype={cfg.dtype!r}: allowed: {', '.join(DTYPES)}")
    _log_likelihood_dtype(cfg)
    if cfg.device not in DEVICES:
        raise ConfigError(f"device={cfg.device!r}: allowed: {', '.join(DEVICES)}")
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda': no CUDA device is available here; use device=cpu")

    try:
        return _build(cfg)
    except OmegaConfBaseException as err:  # e.g. an interpolation that does not resolve
        raise ConfigError(_one_line(err)) from err


def _build(cfg: DictConfig) -> Plan:
    data = _instantiate("data", cfg.data)
    if not isinstance(data, SpheresSettings):
        raise ConfigError(f"data._target_={cfg.data._target_!r} is not a SpheresSettings")
    model = _instantiate("model", cfg.model)
    if not isinstance(model, SphereModel):
        raise ConfigError(f"model._target_={cfg.model._target_!r} is not a SphereModel")

    method = cfg.get("method") or {}
    for key in method:
        if key not in METHOD_KEYS:
            raise ConfigError(f"method.{key}: unknown key; allowed: {', '.join(METHOD_KEYS)}")
    fit, fit_settings = _called_later("inference", cfg.inference, FIT_ARGS)
    inference_name = method.get("name") or fit.__module__.rsplit(".", 1)[-1]
    # `models` lists the built-in models an inference method takes; a model added by a user
    # (a SphereModel subclass outside ModelName) is the user's to pair, so it is not refused.
    supported = list(method.get("models") or [m.value for m in ModelName])
    built_in = str(model.name) in {m.value for m in ModelName}
    if built_in and model.name not in supported:
        raise ConfigError(
            f"model={model.name} with inference={inference_name} is not "
            f"supported; models for {inference_name}: {', '.join(supported)}"
        )

    attack, attack_settings = _called_later("attack", cfg.attack, ATTACK_ARGS)
    extra = cfg.get("extra_attacks") or {}
    extra_attacks = {
        str(k): _called_later(f"extra_attacks.{k}", node, ATTACK_ARGS) for k, node in extra.items()
    }

    return Plan(
        data=data,
        model=model,
        fit=fit,
        fit_settings=fit_settings,
        attack=attack,
        attack_settings=attack_settings,
        inference_name=inference_name,
        attack_name=getattr(attack, "name", None) or attack.__name__,
        resample=bool(method.get("resample", False)),
        dtype=DTYPES[cfg.dtype],
        device=torch.device(cfg.device),
        extra_attacks=extra_attacks,
        polish=_settings("polish", cfg, PolishSettings),
        log_likelihood_dtype=_log_likelihood_dtype(cfg),
        certificate=_settings("certificate", cfg, CertificateSettings),
    )


def _settings(key: str, cfg: DictConfig, kind: type) -> Any:
    """The settings object of the top-level node ``key`` (its defaults where there is none)."""
    node = cfg.get(key)
    if node is None:
        return kind()
    settings = _instantiate(key, node)
    if not isinstance(settings, kind):
        raise ConfigError(f"{key}._target_={node._target_!r} is not {kind.__name__}")
    return settings


def _log_likelihood_dtype(cfg: DictConfig) -> str | None:
    value = cfg.get("log_likelihood", "float64")
    if str(value) not in LOG_LIKELIHOOD_DTYPES:
        raise ConfigError(f"log_likelihood={value!r}: allowed: {', '.join(LOG_LIKELIHOOD_DTYPES)}")
    return None if str(value) == "none" else str(value)
