"""The slice kernel's settings: every default once, checked when made.

``SliceSettings`` is what ``Slice(model, settings)`` runs with, what ``conf/inference/mcmc.yaml``
builds (its ``slice`` node, a Hydra ``_target_``) and what reaches the samplers whole. A bad
value fails when the object is made, with one line naming the setting and what is allowed
(:class:`~bayes_spheres.checks.SettingError`); from a config, the node's full key is put in
front (``inference.slice.trajectory=-1: must be a finite number > 0``).

Three settings depend on the path the kernel takes (``kernels/paths.py``) unless given:
``trajectory``, ``warmup_trajectory`` and ``scale_moves`` (None: the path's own default,
:class:`PathDefaults`). A trajectory length may also be :data:`NO_U_TURN`: a trajectory that
doubles until it turns back on itself (``kernels/no_u_turn.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from bayes_spheres import checks
from bayes_spheres.kernels.fast.fast_cost import MAX_GRAM_BYTES
from bayes_spheres.kernels.hamiltonian import MAX_ENERGY, Mass
from bayes_spheres.kernels.sampler import Directions

# A trajectory length that follows the posterior: doublings until a U-turn (Hoffman & Gelman
# 2014), on the paths that integrate with the generic leapfrog (not the fast path's flow).
NO_U_TURN = "no-u-turn"


@dataclass(frozen=True)
class PathDefaults:
    """What a path uses for the settings left at None (``kernels/paths.py`` says why)."""

    trajectory: float | str | None
    warmup_trajectory: float | None
    scale_moves: int


@dataclass(frozen=True)
class SliceSettings:
    """Settings of :class:`~bayes_spheres.kernels.Slice`.

    :param directions: ``hamiltonian`` (slices along Hamiltonian trajectories), ``factor``
        (eigenvectors of the warm-up covariance, Tibbits et al. 2014) or ``coordinate``.
    :param trajectory: hamiltonian: the length in time of a trajectory (on the fast path in
        prior-whitened units, ``pi / 2`` a quarter period of the prior, and after warm-up in
        the posterior's longest scale, at most the prior's), or :data:`NO_U_TURN` (generic
        and conditional paths; the fast path, whose flow is exact along the prior, keeps a
        fixed length); None: the path's (6 on the fast and
        conditional paths, :data:`NO_U_TURN` on the generic one).
    :param warmup_trajectory: hamiltonian: the length while adapting; None: the path's (or,
        where the path has none, ``trajectory``'s).
    :param target_accept: hamiltonian: the mean ``min(1, e^-dH)`` the step size is adapted to.
    :param mass: hamiltonian, generic path: the mass matrix adapted in warm-up.
    :param scale_moves: scale moves ``theta <- g theta`` after each update (Liu & Sabatti
        2000); None: the path's (3 on the fast path, 0 elsewhere). On the fast path they are
        dropped after warm-up where the trajectories alone mixed the radius.
    :param init_width: the initial width of univariate slices (and of the scale moves).
    :param max_steps: Neal's ``m``: the most widths stepping-out may span.
    :param max_energy: hamiltonian: an energy rise above this marks a divergent update.
    :param fast: take the fast or conditional path where the model allows it.
    :param batch_potential: generic path: evaluate Pyro's potential for all chains in one
        run of the model where a check finds it equal to Pyro's per point.
    :param jit_compile: generic path: record Pyro's potential once and replay it (Pyro's
        ``jit_compile``, ``torch.jit.trace``) where a check finds it equal to Pyro's per point;
        one chain takes it first, several the batched potential.
    :param interweave: generic path: after each update, move the hyper-parameters of
        centred ``Normal`` sites with those sites' standardised values held fixed
        (``kernels/interweaving.py``; Yu & Meng 2011), where the model has such sites.
    :param max_gram_bytes: fast path: the most memory the [N, N] matrix ``A A'`` may take;
        past it the fast path reads its rows on demand or takes another form
        (``kernels/fast/fast_cost.py``; the form and why in ``diagnostics()["form"]``).
    """

    directions: Directions = Directions.HAMILTONIAN
    trajectory: float | str | None = None
    warmup_trajectory: float | None = None
    target_accept: float = 0.8
    mass: Mass = Mass.DIAGONAL
    scale_moves: int | None = None
    init_width: float = 1.0
    max_steps: int = 20
    max_energy: float = MAX_ENERGY
    fast: bool = True
    batch_potential: bool = True
    jit_compile: bool = True
    interweave: bool = True
    max_gram_bytes: int = MAX_GRAM_BYTES

    def __post_init__(self) -> None:
        checked = {
            "directions": checks.choice("directions", self.directions, Directions),
            "mass": checks.choice("mass", self.mass, Mass),
            "target_accept": checks.fraction("target_accept", self.target_accept),
            "init_width": checks.positive("init_width", self.init_width),
            "max_steps": checks.integer("max_steps", self.max_steps, minimum=1),
            "max_energy": checks.positive("max_energy", self.max_energy),
            "fast": checks.flag("fast", self.fast),
            "batch_potential": checks.flag("batch_potential", self.batch_potential),
            "jit_compile": checks.flag("jit_compile", self.jit_compile),
            "interweave": checks.flag("interweave", self.interweave),
            "max_gram_bytes": checks.integer("max_gram_bytes", self.max_gram_bytes),
        }
        if self.trajectory not in (None, NO_U_TURN):
            try:
                checked["trajectory"] = checks.positive("trajectory", self.trajectory)
            except checks.SettingError:
                allowed = f"must be a finite number > 0, {NO_U_TURN!r} or None"
                raise checks.SettingError("trajectory", self.trajectory, allowed) from None
        if self.warmup_trajectory is not None:
            checked["warmup_trajectory"] = checks.positive(
                "warmup_trajectory", self.warmup_trajectory
            )
        if self.scale_moves is not None:
            checked["scale_moves"] = checks.integer("scale_moves", self.scale_moves)
        for name, value in checked.items():  # frozen: the checked, normalised values
            object.__setattr__(self, name, value)

    def on_path(self, defaults: PathDefaults) -> SliceSettings:
        """These settings with those left at None filled in from a path's defaults."""
        given = {f.name: getattr(self, f.name) for f in fields(PathDefaults)}
        filled = {k: getattr(defaults, k) for k, v in given.items() if v is None}
        return replace(self, **filled)
