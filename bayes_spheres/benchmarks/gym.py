"""Reading the Inference Gym (``inference-gym==0.0.5`` on PyPI; Apache 2.0) without importing
it: its ground-truth modules (``targets/ground_truth/*.py``) and shipped data sets
(``internal/datasets/*.py``) are plain numpy files, while the gym's package imports
TensorFlow Probability as soon as a target is touched. Each file is loaded alone, by path.

The ground truths are the gym's own: long Stan runs by its authors ("Automatically generated
using ``python -m inference_gym.tools.get_ground_truth``"), stored as ``IDENTITY_<Q>_MEAN``,
``IDENTITY_<Q>_STANDARD_DEVIATION`` and ``IDENTITY_<Q>_MEAN_STANDARD_ERROR`` for each
quantity ``Q`` of the ``identity`` sample transformation (``IDENTITY_MEAN`` ... where the
parameter is one unnamed array).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np

from bayes_spheres.benchmarks.target import Reference

GYM = "inference_gym"
VERSION = "0.0.5"  # the version whose files were read and transcribed


def gym_root() -> Path:
    """The installed gym's package folder (found, not imported)."""
    spec = importlib.util.find_spec(GYM)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"inference-gym=={VERSION} is needed for the published targets' data and ground "
            "truth: pip install -e '.[test]' (or '.[bench]')"
        )
    return Path(next(iter(spec.submodule_search_locations)))


@functools.cache
def gym_module(relative: str) -> ModuleType:
    """Load ``inference_gym/<relative>.py`` as a module of its own (numpy only inside)."""
    path = gym_root() / f"{relative}.py"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not in this inference-gym (expected {VERSION})")
    spec = importlib.util.spec_from_file_location(f"_gym_{relative.replace('/', '_')}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dataset(name: str) -> ModuleType:
    """The gym's shipped data set ``internal/datasets/<name>.py``."""
    return gym_module(f"internal/datasets/{name}")


def reference(ground_truth: str, quantity: str = "identity") -> Reference:
    """The gym's ground truth ``targets/ground_truth/<ground_truth>.py`` for one quantity of
    its ``identity`` transformation (``"identity"``: the unnamed parameter)."""
    module = gym_module(f"targets/ground_truth/{ground_truth}")
    prefix = "IDENTITY" if quantity == "identity" else f"IDENTITY_{quantity.upper()}"

    def read(suffix: str) -> np.ndarray:
        return np.asarray(getattr(module, f"{prefix}_{suffix}"), dtype=np.float64)

    return Reference(
        mean=read("MEAN"), sd=read("STANDARD_DEVIATION"), mean_se=read("MEAN_STANDARD_ERROR")
    )


def references(ground_truth: str, *quantities: str) -> dict[str, Reference]:
    return {q: reference(ground_truth, q) for q in quantities}
