"""What the fast path's block integrator (:mod:`~bayes_spheres.kernels.fast.linear_trajectory`)
integrates: a logistic likelihood with activations linear in the state
(:class:`LinearLogistic`), and its Gram matrix ``A A'`` [N, N], held whole or computed row by
row.

A kick from points ``J`` moves the activations' velocities ``A v`` by ``s_J (A A')_J``; the
integrator needs the candidates' block ``(A A')_JJ`` once per block of steps and the rows
``(A A')_K`` of the few points that pulled. :class:`StoredGram` holds ``A A'`` (N^2 numbers:
3.4 GB in float32 at N = 30,012; built in O(N^2 P)); :class:`LowRankGram` computes what is
asked for from ``A`` [N, P] (rank P), O(K N P) per block and nothing stored, the form for
large N (``kernels/fast/fast_cost.py`` chooses).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from bayes_spheres.kernels.fast.fast_cost import MAX_GRAM_BYTES


class StoredGram:
    """``A A'`` computed once and held: rows and blocks are look-ups."""

    form = "gram"
    # rows are gathered from the stored matrix (linear_trajectory.GATHER_COST weighs them)
    gathers = True

    def __init__(self, a_z: Tensor) -> None:
        self.matrix = a_z @ a_z.T
        self.size = len(a_z)

    def rows(self, index: Tensor) -> Tensor:
        """``(A A')_index`` [*index.shape, N]."""
        return self.matrix.index_select(0, index.reshape(-1)).reshape(*index.shape, self.size)

    def block(self, index: Tensor) -> Tensor:
        """``(A A')`` at ``index`` [C, J] x ``index``: [C, J, J]."""
        pairs = index[:, :, None] * self.size + index[:, None, :]
        return self.matrix.reshape(-1).take(pairs)


class LowRankGram:
    """``A A'`` never formed: ``(A A')_J = A_J A'`` on demand (O(|J| N P)), ``(A A')_JJ =
    A_J A_J'`` (O(|J|^2 P)); memory O(N P), the ``A`` the integrator holds anyway."""

    form = "rows"
    # a row costs P multiply-adds per element: a product with A is never dearer
    gathers = False

    def __init__(self, a_z: Tensor) -> None:
        self.a_z = a_z
        self.size = len(a_z)

    def rows(self, index: Tensor) -> Tensor:
        """``(A A')_index`` [*index.shape, N]."""
        rows = self.a_z.index_select(0, index.reshape(-1))
        return (rows @ self.a_z.T).reshape(*index.shape, self.size)

    def block(self, index: Tensor) -> Tensor:
        """``(A A')`` at ``index`` [C, J] x ``index``: [C, J, J]."""
        rows = self.a_z.index_select(0, index.reshape(-1)).reshape(*index.shape, -1)
        return torch.bmm(rows, rows.transpose(1, 2))


Gram = StoredGram | LowRankGram


@dataclass
class LinearLogistic:
    """A rest ``power * sum_n log sigmoid(a_n)`` with activations ``a = z @ a_z.T + a_0``
    linear in ``z``: lets
    :func:`~bayes_spheres.kernels.fast.linear_trajectory.slice_trajectory_linear` move them
    with the state instead of recomputing them (O(N P) per step). ``power`` is the
    likelihood's power ``beta`` on a tempered path (1: the posterior;
    :mod:`bayes_spheres.evidence`)."""

    a_z: Tensor  # [N, P]
    a_0: Tensor  # [N]
    power: float = 1.0
    # A A': a kick from points J moves the activations' velocities A v by s_J (A A')_J; by
    # default held whole up to fast_cost.MAX_GRAM_BYTES, else row by row
    gram: Gram | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.gram is None:
            n, itemsize = len(self.a_z), self.a_z.element_size()
            stored = n * n * itemsize <= MAX_GRAM_BYTES
            self.gram = StoredGram(self.a_z) if stored else LowRankGram(self.a_z)

    def tempered(self, power: float) -> LinearLogistic:
        """The same activations with the likelihood raised to ``power`` (shares ``A A'``)."""
        return LinearLogistic(self.a_z, self.a_0, float(power), self.gram)

    def rest(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """The rest's log density and its gradient at ``z`` [C, P]."""
        a = torch.addmm(self.a_0, z, self.a_z.T)
        return self.power * F.logsigmoid(a).sum(-1), self.power * (torch.sigmoid(-a) @ self.a_z)
