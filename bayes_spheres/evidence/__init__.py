"""The marginal likelihood ``p(y) = integral p(y | theta) p(theta) dtheta`` of a Pyro model, by
annealed importance sampling (Neal 2001) with slice-sampling transitions.

Particles start as draws from the prior and move through the tempered targets
``p_beta(theta) ~ p(theta) p(y | theta)^beta``, ``0 = beta_0 < ... < beta_K = 1`` (the
geometric path from prior to posterior). Before the move to ``beta_k`` each particle's log
weight gains ``(beta_k - beta_{k-1}) log p(y | theta)``; the move leaves ``p_beta_k``
invariant and its settings do not depend on the particles, so the estimator is exact AIS:
``mean(exp(log_weights))`` is unbiased for ``p(y)``. Two moves (``transition``):

- ``hamiltonian``: one slice update along a Hamiltonian trajectory
  (:mod:`bayes_spheres.kernels.hamiltonian`, the ``Slice`` kernel's default), on the fast
  path's target (:class:`~bayes_spheres.kernels.fast.logistic.LogisticTarget`, found in the model
  as the kernel finds it: a Bernoulli likelihood with logits linear in the latents under a
  Gaussian prior, such as the flat and shared-mean priors). The prior is the exact Gaussian
  flow and the likelihood, raised to ``beta``, gives the kicks, so an update costs O(N) per
  step. The step size at ``beta = 1`` is the kernel's own warm-up adaptation on separate
  pilot chains (or given); at ``beta`` it is ``step / sqrt(beta)``, as the likelihood's
  curvature scales.
- ``coordinate``: a sweep of univariate slice updates with fixed widths
  (:class:`bayes_spheres.kernels.sampler.SliceSampler`) through Pyro's potential; any model
  with continuous latent sites.

``auto`` takes the first where the model allows it.

The tempered model is the user's model under :class:`Tempering`, which scales the log density
of every site the model observes (``obs=``) by ``beta``; the potential is Pyro's
(:func:`pyro.infer.mcmc.util.initialize_model`, constrained sites in unconstrained space), run
for all particles at once where the model broadcasts (checked, as the kernel does).

    evidence = annealed_importance_sampling(model, x, y, particles=200, temperatures=200)
    evidence.log_evidence, evidence.standard_error

References: R. M. Neal (2001), "Annealed importance sampling", Statistics and Computing 11(2);
R. M. Neal (2003), "Slice sampling", Ann. Statist. 31(3).

Modules: ``tempering.py`` (the handler and the estimate), ``schedules.py`` (where the
temperatures lie), ``moves.py`` (the two moves), ``ais.py`` (the one loop and the driver),
``quadrature.py`` (a scalar site integrated out by Gauss-Hermite quadrature).
"""

from bayes_spheres.evidence.ais import AISSettings, anneal, annealed_importance_sampling
from bayes_spheres.evidence.moves import Transition
from bayes_spheres.evidence.quadrature import SiteQuadrature, evidence_over_site
from bayes_spheres.evidence.schedules import (
    Schedule,
    temperature_schedule,
    thermodynamic_schedule,
)
from bayes_spheres.evidence.tempering import Evidence, Tempering

__all__ = [
    "AISSettings",
    "Evidence",
    "Schedule",
    "SiteQuadrature",
    "Tempering",
    "Transition",
    "anneal",
    "annealed_importance_sampling",
    "evidence_over_site",
    "temperature_schedule",
    "thermodynamic_schedule",
]
