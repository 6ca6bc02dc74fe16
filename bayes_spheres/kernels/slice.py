"""``Slice``: a Pyro :class:`~pyro.infer.mcmc.MCMCKernel` for (factor) slice sampling, or
slice sampling along Hamiltonian trajectories (``directions="hamiltonian"``).

A thin shell over :class:`~bayes_spheres.kernels.sampler.SliceSampler` (Neal 2003; Tibbits et
al. 2014), in the shape of Pyro's ``RandomWalkKernel``: ``setup`` builds the potential with
:func:`pyro.infer.mcmc.util.initialize_model` as ``HMC`` does (constrained sites move in
unconstrained space through Pyro's transforms); one ``sample`` call is one sweep of univariate
updates along every direction. Works for any model with continuous latent sites::

    mcmc = MCMC(Slice(model), num_samples=1000, warmup_steps=500, num_chains=4)
    mcmc.run(data)
    arviz.from_pyro(mcmc)
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable

import torch
from pyro.infer.autoguide.initialization import init_to_uniform
from pyro.infer.mcmc.mcmc_kernel import MCMCKernel
from pyro.infer.mcmc.util import initialize_model
from torch import Tensor

from bayes_spheres.kernels.hamiltonian import HamiltonianSliceSampler
from bayes_spheres.kernels.sampler import Directions, SliceSampler
from bayes_spheres.kernels.targets import PotentialTarget


class Slice(MCMCKernel):
    """Slice sampling along coordinates or warm-up covariance eigenvectors (``directions``).

    :param model: a Pyro model with continuous latent sites; or give ``potential_fn`` (over a
        dict of unconstrained site values), with ``transforms`` and, before ``run``,
        ``initial_params``.
    :param directions: ``"coordinate"`` or ``"factor"`` (eigenvectors of the covariance of the
        warm-up draws, Tibbits et al. 2014).
    :param init_width: initial interval width in unconstrained space (adapted in warm-up).
    :param max_steps: Neal's ``m``: the most widths stepping-out may span.
    :param scale_moves: scale moves ``theta <- g theta`` per sweep (Liu & Sabatti 2000).
    :param trajectory: ``directions="hamiltonian"`` only: the length in time of the
        trajectories along which the slice is sampled (unit mass; step size adapted in warm-up;
        :mod:`bayes_spheres.kernels.hamiltonian`).
    """

    def __init__(
        self,
        model: Callable | None = None,
        potential_fn: Callable[[dict[str, Tensor]], Tensor] | None = None,
        transforms: dict | None = None,
        directions: Directions | str = Directions.FACTOR,
        init_width: float = 1.0,
        max_steps: int = 20,
        scale_moves: int = 0,
        trajectory: float = 3.0,
        init_strategy: Callable = init_to_uniform,
    ) -> None:
        if (model is None) == (potential_fn is None):
            raise ValueError("give exactly one of model and potential_fn")
        if not (isinstance(init_width, int | float) and init_width > 0):
            raise ValueError(f"init_width={init_width!r}: must be a positive number")
        if not (isinstance(max_steps, int) and max_steps >= 1):
            raise ValueError(f"max_steps={max_steps!r}: must be an integer >= 1")
        if not (isinstance(scale_moves, int) and scale_moves >= 0):
            raise ValueError(f"scale_moves={scale_moves!r}: must be an integer >= 0")
        self.model = model
        self.potential_fn = potential_fn
        self.transforms = transforms or {}
        self.directions = Directions(directions)
        self.init_width = float(init_width)
        self.max_steps = max_steps
        self.scale_moves = scale_moves
        if not (isinstance(trajectory, int | float) and trajectory > 0):
            raise ValueError(f"trajectory={trajectory!r}: must be a positive number")
        self.trajectory = float(trajectory)
        self.init_strategy = init_strategy
        self._initial_params: dict[str, Tensor] | None = None
        self._sampler: SliceSampler | HamiltonianSliceSampler | None = None
        self._theta: Tensor | None = None
        self._logp: Tensor | None = None
        super().__init__()

    def setup(self, warmup_steps: int, *args: object, **kwargs: object) -> None:
        if self.model is not None:
            init, self.potential_fn, self.transforms, _ = initialize_model(
                self.model,
                model_args=args,
                model_kwargs=kwargs,
                init_strategy=self.init_strategy,
            )
            if self._initial_params is None:
                self._initial_params = init
        if self._initial_params is None:
            raise ValueError("Slice(potential_fn=...) needs initial_params")
        self._shapes = {k: v.shape for k, v in self._initial_params.items()}
        some = next(iter(self._initial_params.values()))
        size = sum(math.prod(s) for s in self._shapes.values())
        self._target = PotentialTarget(lambda theta: self.potential_fn(self._unravel(theta)))
        if self.directions is Directions.HAMILTONIAN:
            self._sampler = HamiltonianSliceSampler(
                warmup_steps,
                self.trajectory,
                init_step=0.1,
                scale_moves=self.scale_moves,
                scale_width=self.init_width,
                max_steps=self.max_steps,
            )
        else:
            self._sampler = SliceSampler(
                size,
                self.directions,
                warmup=warmup_steps,
                init_width=self.init_width,
                max_steps=self.max_steps,
                scale_moves=self.scale_moves,
                dtype=some.dtype,
                device=some.device,
            )
        self._theta = self._logp = None

    def _unravel(self, theta: Tensor) -> dict[str, Tensor]:
        out, i = {}, 0
        for name, shape in self._shapes.items():
            n = math.prod(shape)
            out[name] = theta[i : i + n].reshape(shape)
            i += n
        return out

    def sample(self, params: dict[str, Tensor]) -> dict[str, Tensor]:
        theta = torch.cat([params[k].detach().reshape(-1) for k in self._shapes])[None]
        if self._theta is None or not torch.equal(theta, self._theta):
            self._logp = self._target.log_density(theta)
        with torch.no_grad():
            self._theta, self._logp = self._sampler.sweep(self._target, theta, self._logp)
        return self._unravel(self._theta[0])

    @property
    def initial_params(self) -> dict[str, Tensor] | None:
        return self._initial_params

    @initial_params.setter
    def initial_params(self, params: dict[str, Tensor]) -> None:
        self._initial_params = params

    def logging(self) -> OrderedDict:
        s = self._sampler
        if isinstance(s, HamiltonianSliceSampler):
            info = s.info()
            return OrderedDict(
                [("step", f"{info['step_size']:.2e}"), ("accept", f"{info['accept_mean']:.2f}")]
            )
        width = float(s.widths.mean()) if s is not None else self.init_width
        calls = s.calls_per_update if s is not None else 0.0
        return OrderedDict([("width", f"{width:.2e}"), ("evals/update", f"{calls:.1f}")])

    def diagnostics(self) -> dict:
        """No divergences exist for slice sampling; the key lets ``arviz.from_pyro`` work."""
        s = self._sampler
        return {"divergences": [], **(s.info() if s is not None else {})}
