"""MCMC kernels: :class:`Slice`, the Pyro ``MCMCKernel`` for slice sampling along Hamiltonian
trajectories, covariance eigenvectors (Tibbits et al. 2014) or coordinates (Neal 2003), a thin
shell over the pure algorithms in this package."""

from bayes_spheres.kernels.hamiltonian import HamiltonianSliceSampler, Mass
from bayes_spheres.kernels.sampler import Directions, SliceSampler
from bayes_spheres.kernels.slice import Slice

__all__ = ["Directions", "HamiltonianSliceSampler", "Mass", "Slice", "SliceSampler"]
