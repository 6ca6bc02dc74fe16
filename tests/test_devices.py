"""``device=cuda`` without a GPU: every tensor a module creates from nothing must be put on
a device on purpose. A tensor made without ``device=`` lands on the CPU and, next to the
data on a GPU, fails there (or, through a CPU generator, silently draws other numbers), so
each such call names its device, is moved at once (``.to(...)``), or says on its line why
the CPU is meant (``# on the CPU: ...``)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "bayes_spheres"
# torch functions that make a tensor from sizes or values (the *_like ones take the device
# of their template and are fine)
FACTORIES = frozenset(
    "arange empty eye full linspace normal ones rand randint randn randperm tensor zeros".split()
)
MARK = "# on the CPU:"


def placeless_factories(source: str) -> list[int]:
    """Line numbers of ``torch.<factory>(...)`` calls in ``source`` with no ``device=``,
    not moved at once by ``.to(...)`` and not in a statement marked ``# on the CPU: reason``
    (on one of its lines or the line above it)."""
    tree = ast.parse(source)
    lines = source.splitlines()
    moved = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr == "to"
    }
    found = []
    for statement in ast.walk(tree):
        if not isinstance(statement, ast.stmt) or hasattr(statement, "body"):
            continue  # simple statements only: a def or a loop holds many
        span = lines[statement.lineno - 2 : statement.end_lineno]
        if any(MARK in line for line in span):
            continue
        for node in ast.walk(statement):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            func = node.func
            if not (isinstance(func.value, ast.Name) and func.value.id == "torch"):
                continue
            if func.attr not in FACTORIES or id(node) in moved:
                continue
            if any(k.arg in ("device", None) for k in node.keywords):  # None: **settings
                continue
            found.append(node.lineno)
    return sorted(found)


def test_the_check_finds_a_placeless_tensor():
    bad = "import torch\ndef f(x):\n    return x + torch.zeros(3)\n"
    good = (
        "import torch\ndef f(x):\n"
        "    a = torch.zeros(3, device=x.device)\n"
        "    b = torch.randn(3, generator=g).to(x)\n"
        "    c = torch.randperm(3)  # on the CPU: an index order\n"
        "    # on the CPU: a count\n"
        "    k = int(torch.randint(0, 3, ()))\n"
        "    return torch.zeros_like(x) + a + b\n"
    )
    assert placeless_factories(bad) == [3]
    assert placeless_factories(good) == []


def test_no_module_makes_a_tensor_without_choosing_its_device():
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{line}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for line in placeless_factories(path.read_text())
    ]
    assert offenders == [], "tensors made without device= (or '# on the CPU: why'):\n" + (
        "\n".join(offenders)
    )
