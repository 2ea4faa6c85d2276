"""The IR's canonical serialisation: JSON-ready data that decodes to equal records.

A record is ``{"@": "ClassName", field: value, ...}`` with fields at their default left out;
tuples become lists. It names chains (their content hash) and is how the applied state is
kept on disk, so it must stay stable: a change to it is a change of the state's version.

>>> from nwguard.ir.nodes import Match, Payload
>>> m = Match(Payload("ip", "saddr"), "10.0.0.1")
>>> encode(m)
{'@': 'Match', 'left': {'@': 'Payload', 'protocol': 'ip', 'field': 'saddr'}, 'right': '10.0.0.1'}
>>> decode(encode(m)) == m
True
"""

from __future__ import annotations

from typing import Any

from nwguard.ir import nodes, ports
from nwguard.records import Record

_MISSING = object()


def _classes() -> dict[str, type[Record]]:
    out: dict[str, type[Record]] = {}
    for mod in (nodes, ports):
        for name, obj in vars(mod).items():
            if isinstance(obj, type) and issubclass(obj, Record) and obj.__module__ == mod.__name__:
                out[name] = obj
    return out


CLASSES = _classes()


def encode(value: Any) -> Any:
    """``value`` (a record, tuple, list, str, int, bool or None) as JSON-ready data."""
    if isinstance(value, Record):
        cls = type(value)
        out: dict[str, Any] = {"@": cls.__name__}
        for name in cls._fields:
            v = getattr(value, name)
            if getattr(cls, name, _MISSING) == v:
                continue  # the default: left out, so adding a defaulted field keeps old hashes
            out[name] = encode(v)
        return out
    if isinstance(value, (tuple, list)):
        return [encode(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    raise TypeError(f"cannot encode {type(value).__name__} in the IR")


def decode(data: Any) -> Any:
    """The inverse of :func:`encode` (lists come back as tuples)."""
    if isinstance(data, dict):
        cls = CLASSES.get(data.get("@", ""))
        if cls is None:
            raise ValueError(f"unknown IR record {data.get('@')!r}")
        return cls(**{k: decode(v) for k, v in data.items() if k != "@"})
    if isinstance(data, list):
        return tuple(decode(v) for v in data)
    return data
