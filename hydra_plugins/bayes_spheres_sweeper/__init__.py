"""Hydra plugins of bayes_spheres (Hydra loads plugins from the ``hydra_plugins`` package)."""

from hydra_plugins.bayes_spheres_sweeper.seeds_by_cost import SeedsByCostSweeper

__all__ = ["SeedsByCostSweeper"]
