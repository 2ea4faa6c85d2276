"""Immutable records built without code generation.

Frozen dataclasses generate their methods with ``exec`` when their module is imported, about
0.5 ms a class; the CLI imports the compiler on every run. These records take their fields
from their annotations instead.

>>> class Point(ValueRecord):
...     x: int
...     y: int = 0
>>> Point(1) == Point(x=1, y=0), Point(1, 2)
(True, Point(x=1, y=2))
"""

from __future__ import annotations

from typing import Any, ClassVar


class Record:
    """An immutable record whose fields are its annotations, in order; class values are defaults.

    Like a frozen dataclass, but built without generating code: the CLI imports this module
    on every run, and ~30 frozen dataclasses cost 20 ms of ``exec`` at start-up.
    """

    _fields: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kw: object) -> None:
        super().__init_subclass__(**kw)
        names: list[str] = []
        for klass in reversed(cls.__mro__):
            # the class's own annotations (inspect.get_annotations; importing inspect is 4 ms)
            for name in klass.__dict__.get("__annotations__", {}):  # noqa: RUF063
                if not name.startswith("_") and name not in names:
                    names.append(name)
        cls._fields = tuple(names)

    def __init__(self, *args: object, **kw: object) -> None:
        fields = self._fields
        if not kw and len(args) == len(fields):  # the common case, kept fast
            for name, value in zip(fields, args):
                object.__setattr__(self, name, value)
            return
        if len(args) > len(fields):
            raise TypeError(f"{type(self).__name__} takes {len(self._fields)} values")
        values = dict(zip(self._fields, args))
        values.update(kw)
        for name in self._fields:
            if name in values:
                object.__setattr__(self, name, values.pop(name))
            elif not hasattr(type(self), name):
                raise TypeError(f"{type(self).__name__} needs {name}")
        if values:
            raise TypeError(f"{type(self).__name__} has no field {', '.join(values)}")

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def replace(self, **changes: Any) -> Any:
        """A copy with some fields changed (``dataclasses.replace`` for records)."""
        values = {n: getattr(self, n) for n in self._fields}
        values.update(changes)
        return type(self)(**values)

    def __repr__(self) -> str:
        args = ", ".join(f"{n}={getattr(self, n)!r}" for n in self._fields)
        return f"{type(self).__name__}({args})"


class ValueRecord(Record):
    """A record that compares and hashes by its field values, like a frozen dataclass."""

    def _key(self) -> tuple[Any, ...]:
        return tuple(getattr(self, n) for n in self._fields)

    def __eq__(self, other: object) -> bool:
        same = type(other) is type(self)
        return same and isinstance(other, ValueRecord) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._key()))


class MutableRecord:
    """A mutable record: compared by value and shown field by field, like a (non-frozen)
    dataclass, without ``dataclasses`` (which imports ``inspect``: ~4 ms of a one-shot
    command's start-up). A subclass names its fields in ``_fields``, in order, keeps them in
    ``__slots__`` and writes its ``__init__`` (fresh containers as defaults)."""

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()
    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self._fields)

    def __repr__(self) -> str:
        args = ", ".join(f"{n}={getattr(self, n)!r}" for n in self._fields)
        return f"{type(self).__name__}({args})"
