"""One registry type for every pluggable part (backends, searchers, labellers, engines,
objectives, packs, verifiers): a name -> factory map that refuses a second, different factory
under a taken name and, on an unknown name, lists the valid ones."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from reasoner.errors import UnknownName

T = TypeVar("T")


class Registry(dict[str, T], Generic[T]):
    def __init__(self, kind: str, error: type[Exception] = UnknownName):
        super().__init__()
        self.kind, self.error = kind, error

    def register(self, name: str) -> Callable[[T], T]:
        def deco(factory: T) -> T:
            if name in self and self[name] is not factory:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self[name] = factory
            return factory

        return deco

    def lookup(self, name: str) -> T:
        if name not in self:
            raise self.error(f"unknown {self.kind} {name!r}; valid: {', '.join(sorted(self))}")
        return self[name]
