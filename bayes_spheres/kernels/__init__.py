"""MCMC kernels: :class:`Slice`, the Pyro ``MCMCKernel`` for slice sampling along Hamiltonian
trajectories, covariance eigenvectors (Tibbits et al. 2014) or coordinates (Neal 2003), a thin
shell over the pure algorithms in this package; :class:`SliceSettings`, its settings; and
:class:`VectorizedMCMC`, which runs all of a run's chains as one batch."""

from bayes_spheres.kernels.hamiltonian import HamiltonianSliceSampler, Mass
from bayes_spheres.kernels.sampler import Directions, SliceSampler
from bayes_spheres.kernels.settings import NO_U_TURN, SliceSettings
from bayes_spheres.kernels.slice import Slice
from bayes_spheres.kernels.vectorized import VectorizedMCMC

__all__ = [
    "NO_U_TURN",
    "Directions",
    "HamiltonianSliceSampler",
    "Mass",
    "Slice",
    "SliceSampler",
    "SliceSettings",
    "VectorizedMCMC",
]
