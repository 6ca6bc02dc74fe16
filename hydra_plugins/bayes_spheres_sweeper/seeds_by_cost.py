"""Hydra's basic sweeper, with fewer seeds for the rows that cost more.

A grid sweep gives every row the same seeds. Table 1's rows differ in cost by two orders
of magnitude (MAP seconds, MCMC minutes), so the cheap rows can afford more seeds for the
same wall time. ``conf/hydra/sweeper/seeds_by_cost.yaml`` selects this sweeper; the
experiment names the row parameter and, per row, how many of the swept seeds it takes
(the first ones, in the order swept); a row not named takes every seed::

    hydra:
      sweeper:
        params:
          +experiment/table1: mcmc,map
          seed: range(0,10)
        row: +experiment/table1
        seeds: {mcmc: 3}        # mcmc: seeds 0-2; map: seeds 0-9

Everything else (``params``, command-line sweeps, ``max_batch_size``) is Hydra's
``BasicSweeper``: overriding ``hydra.sweeper.params.seed=0`` still runs one seed per row.
"""

from __future__ import annotations

from collections.abc import Mapping

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException


def _key(assignment: str) -> str:
    """``+experiment/table1=mcmc`` -> ``experiment/table1`` (without Hydra's prefixes)."""
    return assignment.split("=", 1)[0].lstrip("+~")


def _value(assignment: str) -> str:
    return assignment.split("=", 1)[1]


class SeedsByCostSweeper(BasicSweeper):
    """``BasicSweeper`` that runs only the first ``seeds[row]`` seeds of a named row."""

    def __init__(
        self,
        max_batch_size: int | None,
        params: Mapping[str, str] | None = None,
        row: str = "+experiment/table1",
        seed: str = "seed",
        seeds: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.row_key = row.lstrip("+~")
        self.seed_key = seed.lstrip("+~")
        self.seeds = dict(seeds or {})
        for row_value, count in self.seeds.items():
            if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                raise HydraException(
                    f"hydra.sweeper.seeds.{row_value}={count!r}: the number of seeds of a row "
                    "must be an integer >= 1"
                )

    def split_arguments(  # type: ignore[override]  # BasicSweeper's is a staticmethod
        self, overrides: list[Override], max_batch_size: int | None
    ) -> list[list[list[str]]]:
        """Hydra's cross product of the overrides, less the seeds each row does not take."""
        (jobs,) = BasicSweeper.split_arguments(overrides, None)
        keys = {_key(assignment) for assignment in jobs[0]} if jobs else set()
        for needed in (self.row_key, self.seed_key):
            if self.seeds and needed not in keys:
                raise HydraException(
                    f"hydra.sweeper.seeds names rows of '{needed}', which this sweep does not "
                    f"set (it sets: {', '.join(sorted(keys))})"
                )
        swept_seeds: list[str] = []
        for job in jobs:
            for assignment in job:
                if _key(assignment) == self.seed_key and _value(assignment) not in swept_seeds:
                    swept_seeds.append(_value(assignment))

        def taken(job: list[str]) -> bool:
            values = {_key(assignment): _value(assignment) for assignment in job}
            count = self.seeds.get(values.get(self.row_key, ""))
            return count is None or swept_seeds.index(values[self.seed_key]) < count

        kept = [job for job in jobs if taken(job)]
        if max_batch_size is None:
            return [kept]
        return list(BasicSweeper.split_overrides_to_chunks(kept, max_batch_size))
