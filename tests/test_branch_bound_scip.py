"""An independent check of the branch-and-bound certificate: SCIP, a global MINLP solver
(through PySCIPOpt), maximises the same problem, ``mean_s sigmoid(z_s(u))`` over the unit
simplex of ``u``, at dimensions a grid cannot cover. Any point SCIP returns is a point of the
sphere, so its value (recomputed here in float64 from SCIP's ``u``, renormalised onto the
simplex) is at most the true maximum, hence at most any valid bound; and the best point the
certificate's search found is at most SCIP's proven dual bound."""

from __future__ import annotations

import pytest
import torch

from bayes_spheres.attack import vertex_logits
from bayes_spheres.branch_bound import certify_sphere
from bayes_spheres.data import INNER, OUTER
from tests.test_branch_bound import QUICK, RADII, hard_ensemble

pyscipopt = pytest.importorskip("pyscipopt")


def scip_maximum(z: torch.Tensor, time_limit: float) -> tuple[torch.Tensor, float, str]:
    """SCIP's best ``u`` for ``max mean_s sigmoid(sum_d u_d z[s, d])`` on the unit simplex,
    its dual bound and its status."""
    members, dim = z.shape
    model = pyscipopt.Model()
    model.hideOutput()
    model.setParam("limits/time", time_limit)
    u = [model.addVar(lb=0.0, ub=1.0) for _ in range(dim)]
    model.addCons(pyscipopt.quicksum(u) == 1)
    mean = model.addVar(lb=0.0, ub=1.0)
    sigmoids = []
    for s in range(members):
        activation = pyscipopt.quicksum(float(z[s, d]) * u[d] for d in range(dim))
        sigmoids.append((1 + pyscipopt.exp(-activation)) ** (-1))
    model.addCons(members * mean <= pyscipopt.quicksum(sigmoids))
    model.setObjective(mean, "maximize")
    model.optimize()
    best = torch.tensor([max(model.getVal(v), 0.0) for v in u], dtype=torch.float64)
    return best / best.sum(), model.getDualbound(), model.getStatus()


@pytest.mark.parametrize(
    ("seed", "dim", "members", "scale", "label"),
    [(0, 6, 4, 6.0, INNER), (0, 6, 4, 6.0, OUTER), (1, 8, 6, 6.0, OUTER),
     pytest.param(2, 10, 5, 40.0, INNER, marks=pytest.mark.slow)],
)  # fmt: skip
def test_the_bound_is_never_below_a_point_scip_finds(seed, dim, members, scale, label):
    ensemble = hard_ensemble(seed, members, dim, scale)
    z = vertex_logits(ensemble, RADII[label], label).double()  # [S, D]
    u, dual, status = scip_maximum(z, time_limit=30.0)
    value = float(torch.sigmoid(z @ u).mean())
    cert = certify_sphere(ensemble, RADII[label], label, settings=QUICK)
    assert cert.bound >= value, (cert.bound, value, status)
    assert cert.found <= dual + 1e-6, (cert.found, dual, status)
    if status == "optimal":  # SCIP's value is the maximum: the search's point is near it
        assert value - cert.found < 1e-4, (value, cert.found)
