"""Shared fixtures: float64 everywhere, and Hydra configs composed the way the CLI composes them."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pyro
import pytest
import torch
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from omegaconf import DictConfig

from bayes_spheres.progress import BARS_OFF

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")

# Always on top of the caller's overrides: the quick scale, no bars, and a little smaller still.
BASE_OVERRIDES = ("scale=quick", "progress=false", "data.n_val=2000", "members=20")


# Every tensor here is small: more than one intra-op thread only adds synchronisation, and on a
# shared 2-core machine OpenMP spin-waiting made some attack tests ten times slower.
torch.set_num_threads(1)


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


@pytest.fixture(autouse=True)
def _float64_and_clean_pyro() -> Iterator[None]:
    """Every test starts in float64 with an empty param store; pipeline.run may change the
    default dtype, so restore it afterwards."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    pyro.clear_param_store()
    yield
    torch.set_default_dtype(old)
    pyro.clear_param_store()


@pytest.fixture(autouse=True)
def _no_bars() -> Iterator[None]:
    """No progress bars in tests (``TQDM_DISABLE=1`` unless set already; every bar reads it,
    bayes_spheres/progress.py); restored after each test, since ``pipeline.run`` switches bars
    off for the process when ``progress=false``."""
    old = os.environ.get(BARS_OFF)
    os.environ.setdefault(BARS_OFF, "1")
    yield
    if old is None:
        os.environ.pop(BARS_OFF, None)
    else:
        os.environ[BARS_OFF] = old


def compose_config(overrides: list[str] = (), shrink: bool = True) -> DictConfig:
    """Compose ``conf/config.yaml`` with ``overrides``, as the CLI would. With ``shrink``, the
    quick scale, no progress bars and smaller sizes go first, and the caller's overrides win."""
    overrides = list(overrides)
    if shrink:
        mine = {_key(o) for o in overrides}
        overrides = [o for o in BASE_OVERRIDES if _key(o) not in mine] + overrides
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


@pytest.fixture(scope="session")
def compose_session() -> Callable[[list[str]], DictConfig]:
    """``compose`` for fixtures wider than one test."""
    return compose_config


@pytest.fixture
def compose_raw() -> Callable[[list[str]], DictConfig]:
    """``compose_raw(overrides)``: the config exactly as the CLI would build it, nothing added."""
    return lambda overrides=(): compose_config(overrides, shrink=False)


@pytest.fixture
def compose() -> Callable[[list[str]], DictConfig]:
    """``compose(overrides)``: the quick, shrunk config; the caller's overrides win."""
    return compose_config
