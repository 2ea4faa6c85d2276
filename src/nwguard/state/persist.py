"""One way to keep records on disk: a versioned JSON document per record, replaced atomically.

A document is one JSON object: the record's ``to_json()`` plus ``"version"``, the schema
version of its :class:`Format`. Reading checks the version first: a file of a newer or unknown
version is refused with a :class:`SchemaVersionError` naming the file; an older one is migrated
step by step (``migrations[v]`` turns a version-``v`` object into version ``v + 1``). Files
written before versions existed have no ``"version"``: ``unversioned`` says which version
they are (None: refused). A file that is not JSON or does not decode is a :class:`StateError`
naming the file, never a ``KeyError``.

Writes go to a temporary file renamed over the old one (:func:`~nwguard.state.files.atomic_write`):
readers see the old or the new record, and a write that fails leaves the old one. ``durable``
adds the fsyncs that configuration needs; runtime state (``/run``) does without.

>>> import tempfile, pathlib
>>> from nwguard.records import ValueRecord
>>> class Point(ValueRecord):
...     x: int
...     def to_json(self): return {"x": self.x}
...     @classmethod
...     def from_json(cls, d): return cls(d["x"])
>>> points = RecordDir(pathlib.Path(tempfile.mkdtemp()), Format("point", 1, Point.from_json))
>>> points.put("a", Point(1)); points.get("a"), points.keys()
(Point(x=1), ['a'])

Imported by every ``nwfilter-*`` command (through the learned-address store): no dataclasses.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar

from nwguard.errors import StateError
from nwguard.state.files import atomic_write, locked, remove_file

__all__ = ["Document", "Format", "RecordDir", "SchemaVersionError", "StateError"]

R = TypeVar("R")
Migration = Callable[[dict[str, Any]], dict[str, Any]]


class SchemaVersionError(StateError):
    """A document of a schema version this nwguard cannot read (newer, or unknown)."""


def _to_json(record: Any) -> dict[str, Any]:
    return record.to_json()  # type: ignore[no-any-return]


class Format(Generic[R]):
    """How records of one type are stored: what they are (for errors), version, codec.

    ``load`` builds a record from its JSON object (``version`` removed, migrated); ``dump``
    (default: ``record.to_json()``) is its inverse. ``indent`` makes files for people to read.
    """

    __slots__ = ("dump", "indent", "load", "migrations", "unversioned", "version", "what")

    def __init__(
        self,
        what: str,
        version: int,
        load: Callable[[dict[str, Any]], R],
        dump: Callable[[R], dict[str, Any]] = _to_json,
        *,
        migrations: Mapping[int, Migration] | None = None,
        unversioned: int | None = None,
        indent: int | None = None,
    ) -> None:
        self.what, self.version, self.load, self.dump = what, version, load, dump
        self.migrations = dict(migrations or {})
        self.unversioned, self.indent = unversioned, indent
        oldest = min(self.migrations, default=version)
        if any(v not in self.migrations for v in range(oldest, version)):
            raise ValueError(f"{what}: migrations must cover versions {oldest} to {version - 1}")

    def encode(self, record: R) -> bytes:
        body = self.dump(record)
        if "version" in body:
            raise ValueError(f"{self.what}: 'version' is the schema version, not a field")
        doc = {"version": self.version, **body}
        seps = (",", ": ") if self.indent is not None else (",", ":")
        return json.dumps(doc, indent=self.indent, separators=seps).encode()  # fields in order

    def decode(self, data: bytes, where: Path | str) -> R:
        """The record in ``data`` (read from ``where``), migrated to this version."""
        try:
            doc = json.loads(data)
        except ValueError as exc:  # UnicodeDecodeError is one too
            raise StateError(f"{where}: not a {self.what} file (not JSON: {exc})") from None
        if not isinstance(doc, dict):
            raise StateError(f"{where}: not a {self.what} file (not a JSON object)")
        version = doc.pop("version", self.unversioned)
        oldest = min(self.migrations, default=self.version)
        if type(version) is not int or not oldest <= version <= self.version:
            newer = type(version) is int and version > self.version
            raise SchemaVersionError(
                f"{where}: {self.what} file of schema version {version!r}"
                + (" (written by a newer nwguard)" if newer else "")
                + f"; this nwguard reads versions {oldest} to {self.version}"
            )
        try:
            for v in range(version, self.version):
                doc = self.migrations[v](doc)
            return self.load(doc)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            detail = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
            raise StateError(
                f"{where}: not a valid {self.what} file (version {version}): {detail}"
            ) from None


class Document(Generic[R]):
    """One record of format ``fmt`` at ``path``; ``lock``: the file :meth:`update` locks."""

    __slots__ = ("durable", "fmt", "lock", "mode", "path")

    def __init__(
        self, path: Path, fmt: Format[R], *, durable: bool = False, mode: int = 0o600,
        lock: Path | None = None,
    ) -> None:  # fmt: skip
        self.path, self.fmt, self.durable, self.mode, self.lock = path, fmt, durable, mode, lock

    def exists(self) -> bool:
        return self.path.is_file()

    def read(self) -> R | None:
        """The record, or None when there is no file (StateError if it cannot be read)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"{self.path}: cannot read: {exc.strerror}") from exc
        return self.fmt.decode(data, self.path)

    def write(self, record: R) -> None:
        """Replace the file with ``record``: readers see the old or the new one, never a mix."""
        data = self.fmt.encode(record)  # before touching the file: a bad record changes nothing
        atomic_write(self.path, data, mode=self.mode, durable=self.durable)

    def remove(self) -> None:
        remove_file(self.path)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold this document's lock (exclusive) for the block."""
        if self.lock is None:
            raise ValueError(f"{self.path}: this document has no lock")
        with locked(self.lock):
            yield

    def update(self, change: Callable[[R | None], R | None]) -> R | None:
        """Read, change and write back under the lock; ``change`` returning None removes."""
        with self.locked():
            new = change(self.read())
            if new is None:
                self.remove()
            else:
                self.write(new)
            return new


class RecordDir(Generic[R]):
    """A directory of records of one format, one file ``<key><suffix>`` per key.

    Keys are file names: not empty, without ``/``, not starting with ``.`` (temporary files
    do). :meth:`get` of a key that cannot be a file name is None; :meth:`put` refuses it.
    """

    __slots__ = ("dir", "durable", "fmt", "lock", "mode", "suffix")

    def __init__(
        self, directory: Path, fmt: Format[R], *, suffix: str = ".json", durable: bool = False,
        mode: int = 0o600, lock: Path | None = None,
    ) -> None:  # fmt: skip
        self.dir, self.fmt, self.suffix = Path(directory), fmt, suffix
        self.durable, self.mode, self.lock = durable, mode, lock

    @staticmethod
    def valid_key(key: str) -> bool:
        return bool(key) and "/" not in key and "\0" not in key and not key.startswith(".")

    def path(self, key: str) -> Path:
        if not self.valid_key(key):
            raise ValueError(f"{key!r} cannot name a {self.fmt.what} file")
        return self.dir / f"{key}{self.suffix}"

    def document(self, key: str) -> Document[R]:
        return Document(
            self.path(key), self.fmt, durable=self.durable, mode=self.mode, lock=self.lock
        )

    def exists(self, key: str) -> bool:
        return self.valid_key(key) and self.path(key).is_file()

    def get(self, key: str) -> R | None:
        return self.document(key).read() if self.valid_key(key) else None

    def put(self, key: str, record: R) -> None:
        self.document(key).write(record)

    def remove(self, key: str) -> None:
        if self.valid_key(key):
            remove_file(self.path(key))

    def keys(self) -> list[str]:
        """The keys stored, sorted."""
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        n = len(self.suffix)
        return sorted(f[:-n] for f in names if f.endswith(self.suffix) and self.valid_key(f[:-n]))

    def items(self, on_error: Callable[[str, StateError], None] | None = None) -> dict[str, R]:
        """Every record by key (sorted); ``on_error``: skip a file that cannot be read."""
        out: dict[str, R] = {}
        for key in self.keys():
            try:
                record = self.get(key)
            except StateError as exc:
                if on_error is None:
                    raise
                on_error(key, exc)
                continue
            if record is not None:  # removed meanwhile
                out[key] = record
        return out

    def prune(self, keep: set[str] | Mapping[str, Any]) -> list[str]:
        """Remove the records whose key is not in ``keep``; return their keys."""
        gone = [k for k in self.keys() if k not in keep]
        for key in gone:
            remove_file(self.path(key))
        return gone

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        if self.lock is None:
            raise ValueError(f"{self.dir}: this directory has no lock")
        with locked(self.lock):
            yield
