"""MCMC kernels: slice sampling (Neal 2003) along coordinates or factor directions (Tibbits
et al. 2014); :class:`Slice` is the Pyro ``MCMCKernel`` shell over the pure steps."""

from bayes_spheres.kernels.sampler import Directions, SliceSampler
from bayes_spheres.kernels.slice import Slice

__all__ = ["Directions", "Slice", "SliceSampler"]
