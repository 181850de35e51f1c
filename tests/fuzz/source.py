"""Mutants by key: the same bytes in the worker that runs them and in the parent that keeps
a reproducer (mutants are generated where they run, so the workers share the cost)."""

from __future__ import annotations

from formats import FORMATS, Seed
from mutate import Mutator


class MutantSource:
    """The seeds of one format and their mutators, built once."""

    def __init__(self, fmt: str) -> None:
        spec = FORMATS[fmt]
        self.format = fmt
        self.seeds: list[Seed] = spec.seeds()
        self.mutators = [Mutator(s.data, s.fields, spec.text, spec.semantic)
                         for s in self.seeds]

    def key(self, campaign: str, i: int) -> tuple[int, str]:
        """(seed index, mutation key) of mutant ``i``: seeds taken round robin."""
        k = i % len(self.seeds)
        return k, f"{campaign}:{self.format}:{self.seeds[k].name}:{i}"

    def make(self, seed_index: int, key: str) -> tuple[bytes, str]:
        return self.mutators[seed_index].mutant(key)
