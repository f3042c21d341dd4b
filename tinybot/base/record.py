"""Dataclasses that cost less to define: `record` / `mutable_record`, with __repr__, __eq__, __hash__ shared.

A plain ``@dataclass(frozen=True)`` compiles six methods from source text for
every class when its module is imported (~0.5 ms a class here, ~30 classes on
the way to ``tinybot status``).  These decorators let ``dataclass`` compile
only what depends on the fields' names (``__init__``, and for a frozen class
``__setattr__``/``__delattr__``); ``__repr__``, ``__eq__`` and ``__hash__``
come from one base, read the fields at call time, and behave as dataclass's
own do (same text, equal only to the same class, hash of the compared
fields).  ``dataclasses.fields``, ``replace`` and ``asdict`` work as before.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def _compared(obj: Any) -> tuple:
    return tuple(getattr(obj, f.name) for f in dataclasses.fields(obj) if f.compare)


class Record:
    """The methods dataclass would generate per class, written once."""

    __slots__ = ()

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self) if f.repr)
        return f"{type(self).__qualname__}({shown})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return _compared(self) == _compared(other)
        return NotImplemented

    def __hash__(self) -> int:
        hashed = (f for f in dataclasses.fields(self) if (f.compare if f.hash is None else f.hash))
        return hash(tuple(getattr(self, f.name) for f in hashed))


class MutableRecord(Record):
    """A record whose fields change after it is made: unhashable, as a mutable dataclass is."""

    __slots__ = ()
    __hash__ = None  # type: ignore[assignment]


def _checked(cls: type, base: type) -> None:
    if not issubclass(cls, base):
        raise TypeError(f"{cls.__qualname__} must derive from {base.__name__}")


def record(cls: type[T]) -> type[T]:
    """``@dataclass(frozen=True)`` for a subclass of ``Record``."""
    _checked(cls, Record)
    return dataclasses.dataclass(cls, frozen=True, repr=False, eq=False)


def mutable_record(cls: type[T]) -> type[T]:
    """``@dataclass`` for a subclass of ``MutableRecord``."""
    _checked(cls, MutableRecord)
    return dataclasses.dataclass(cls, repr=False, eq=False)
