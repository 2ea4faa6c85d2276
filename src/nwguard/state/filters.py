"""Filters on disk: one libvirt-format XML file per filter, ``<config>/nwfilter/<name>.xml``.

The store does file I/O only (no nftables, no locking): its caller (``ops_nwfilter``) holds
``Context.lock()`` around every change, so the checks below and the write that follows them
see one consistent directory.

Decisions, where libvirt leaves room:

* **Built-ins.** The first time a configuration directory is used, the 24 built-in filters are
  written into it, each only if no file of that name exists (an operator's own definition is
  never overwritten, nor is a built-in whose UUID another filter already uses). A marker file
  ``.builtins-installed`` records that this happened, so a built-in the operator undefines
  stays undefined (libvirt reinstalls its files only when its package is installed). Removing
  the marker reinstalls the missing built-ins on next use, still without overwriting anything.
  The marker is a :mod:`~nwguard.state.persist` document naming the filters installed; only
  its existence counts (older markers are plain text).
* **Redefining without a UUID.** A definition without ``<uuid>`` for a name that exists takes
  the existing filter's UUID and updates it (libvirt would generate a random UUID and refuse
  the define); a new name without ``<uuid>`` gets a random one.
* **Hand-edited files.** A file whose ``name`` differs from its file name, a file that does
  not parse, or two files with one UUID make loading fail with an error naming the file(s):
  nwguard refuses to guess which filter is meant. A file without ``<uuid>`` gets a UUID derived
  from its name (stable across readers) and is rewritten with it when loaded for a change.

>>> import tempfile, pathlib
>>> store = FilterStore(pathlib.Path(tempfile.mkdtemp()) / "nwfilter")
>>> store.setup()[:2]
['allow-arp', 'allow-dhcp']
>>> store.get("clean-traffic", store.load()).uuid
'db0b1767-d62b-269b-ea96-0cc8b451144e'
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from nwguard.errors import (
    ConflictError,
    InUseError,
    LoopError,
    NotFoundError,
    NwguardError,
    PermissionDeniedError,
)
from nwguard.model.filter import Filter
from nwguard.records import ValueRecord
from nwguard.state.files import atomic_write, remove_file
from nwguard.state.persist import Document, Format
from nwguard.xmlio.filter_xml import parse_filter, write_filter

MARKER = ".builtins-installed"
_UUID_NS = "3f1c2a5e-6a43-4d0b-9a53-2b1f0f6c9e10"  # uuid5 namespace for file-less uuids
# uuid and the compiler's checks are imported where used: a list needs neither (start-up)

FilterMap = dict[str, Filter]
BeforeSave = Callable[[FilterMap], None]
"""Called with the complete filter map as it will be after a change; raising vetoes it."""


class BuiltinsMarker(ValueRecord):
    """What the marker file records: the built-ins installed into the directory."""

    installed: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"installed": list(self.installed), "note": "remove to reinstall missing built-ins"}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> BuiltinsMarker:
        return cls(tuple(str(n) for n in d["installed"]))


MARKER_FORMAT = Format("built-ins marker", 1, BuiltinsMarker.from_json)


class FilterStore:
    """The filters of one configuration directory.

    Reading: :meth:`load`, :meth:`get`. Changing: :meth:`define`, :meth:`undefine` (each takes
    the current map from :meth:`load` so a caller can check and change one snapshot).
    """

    def __init__(self, directory: Path, builtins: Mapping[str, Filter] | None = None) -> None:
        self.dir = Path(directory)
        self._builtins = builtins
        self._parsed: dict[str, tuple[tuple[int, int, int], Filter]] = {}

    # ------------------------------------------------------------------------- built-ins

    def builtins(self) -> Mapping[str, Filter]:
        if self._builtins is None:
            from nwguard.builtin import builtin_filters

            self._builtins = builtin_filters()
        return self._builtins

    def marker(self) -> Document[BuiltinsMarker]:
        return Document(self.dir / MARKER, MARKER_FORMAT, durable=True)

    def needs_setup(self) -> bool:
        """True until the built-ins have been installed into this directory once."""
        return not (self.dir / MARKER).exists()

    def setup(self) -> list[str]:
        """Install the built-ins missing from a fresh directory; return the names installed.

        Does nothing once the marker exists. Never overwrites a file, never installs a built-in
        whose UUID another filter already has.
        """
        if not self.needs_setup():
            return []
        with fs_errors(self.dir, "create"):
            self.dir.mkdir(parents=True, exist_ok=True)
        missing = self._missing_builtins(self.load())
        for f in missing:
            self.save(f)
        with fs_errors(self.dir / MARKER, "write"):
            self.marker().write(BuiltinsMarker(tuple(f.name for f in missing)))
        return [f.name for f in missing]

    def preview(self) -> FilterMap:
        """What :meth:`load` returns after :meth:`setup`, without writing anything (dry run)."""
        filters = self.load()
        if self.needs_setup():
            filters.update((f.name, f) for f in self._missing_builtins(filters))
            filters = dict(sorted(filters.items()))
        return filters

    def _missing_builtins(self, existing: Mapping[str, Filter]) -> list[Filter]:
        uuids = {f.uuid for f in existing.values()}
        return [
            f
            for name, f in self.builtins().items()
            if name not in existing and f.uuid not in uuids and not self.path(name).exists()
        ]

    # ------------------------------------------------------------------------- reading

    def path(self, name: str) -> Path:
        return self.dir / f"{name}.xml"

    def load(self, *, write_back: bool = False) -> FilterMap:
        """Every stored filter by name, sorted by name.

        ``write_back``: give uuid-less files their (name-derived) UUID on disk too; only with
        the exclusive lock held.
        """
        out: FilterMap = {}
        by_uuid: dict[str, str] = {}
        for path in self._files():
            loaded = self._load_file(path)
            if loaded is None:  # removed meanwhile by a writer we did not lock out
                continue
            f, missing_uuid = loaded
            if f.uuid in by_uuid:
                other = self.path(by_uuid[f.uuid])
                raise ConflictError(f"{path}: filter has the same uuid {f.uuid} as {other}")
            if missing_uuid and write_back:
                self.save(f)
            out[f.name] = f
            by_uuid[f.uuid] = f.name
        return out

    def _load_file(self, path: Path) -> tuple[Filter, bool] | None:
        """Parse one file (cached while its inode, mtime and size stay); None if it vanished."""
        try:
            with open(path, "rb") as fh:
                st = os.fstat(fh.fileno())
                key = (st.st_ino, st.st_mtime_ns, st.st_size)
                cached = self._parsed.get(path.name)
                if cached is not None and cached[0] == key:
                    return cached[1], False
                data = fh.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise NwguardError(f"{path}: cannot read: {exc.strerror}") from exc
        missing: list[str] = []
        f = parse_filter(data, str(path), missing_uuid=partial(_derived_uuid, record=missing))
        stem = path.name.removesuffix(".xml")
        if f.name != stem:
            raise NwguardError(
                f"{path}: file defines filter '{f.name}'; its file name must be '{f.name}.xml'"
            )
        if not missing:
            self._parsed[path.name] = (key, f)
        return f, bool(missing)

    def _files(self) -> list[Path]:
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        return [self.dir / n for n in sorted(names) if n.endswith(".xml") and not n.startswith(".")]

    @staticmethod
    def get(name_or_uuid: str, filters: Mapping[str, Filter]) -> Filter:
        """The filter of that name, else of that UUID; NotFoundError if neither."""
        if name_or_uuid in filters:
            return filters[name_or_uuid]
        import uuid as uuidlib

        try:
            want = str(uuidlib.UUID(name_or_uuid))
        except ValueError:
            want = None
        for f in filters.values():
            if f.uuid == want:
                return f
        raise NotFoundError(
            f"network filter not found: no filter with name or uuid '{name_or_uuid}'"
        )

    def parse(
        self,
        xml: str | bytes,
        file: str | None,
        filters: Mapping[str, Filter],
        warn: Callable[[str], None] | None = None,
    ) -> Filter:
        """Parse a definition; without ``<uuid>`` it takes the UUID of the filter it updates.
        ``warn``: lenient, unknown attributes and elements are ignored and reported to it."""

        import uuid as uuidlib

        from nwguard.compile.check import unbindable

        def existing_or_random(name: str) -> str:
            old = filters.get(name)
            return old.uuid if old else str(uuidlib.uuid4())

        # a rule the compiler can never express is refused here, not at its first bind
        return parse_filter(
            xml, file, missing_uuid=existing_or_random, check_rule=unbindable, warn=warn
        )

    # ------------------------------------------------------------------------- changing

    def save(self, f: Filter) -> None:
        """Write one filter atomically (no checks: see :meth:`define`)."""
        with fs_errors(self.path(f.name), "write"):
            atomic_write(self.path(f.name), write_filter(f))

    def define(
        self,
        new: Filter,
        filters: Mapping[str, Filter],
        before_save: BeforeSave | None = None,
        *,
        save: bool = True,
    ) -> Filter | None:
        """Create or update ``new`` after libvirt's checks; return the filter it replaced.

        ``before_save`` sees the complete new map unless the definition is unchanged; if it
        raises, nothing is written. ``save=False`` checks and calls the hook only (dry run).
        """
        old = check_define(new, filters)
        if before_save is not None and (old is None or write_filter(old) != write_filter(new)):
            before_save({**filters, new.name: new})
        if save:
            self.save(new)
        return old

    def undefine(
        self,
        name_or_uuid: str,
        filters: Mapping[str, Filter],
        before_save: BeforeSave | None = None,
        *,
        save: bool = True,
    ) -> Filter:
        """Remove a filter no other filter references; return it.

        ``before_save`` sees the map without it and may veto (the binding engine raises
        InUseError while a port uses the filter).
        """
        f = self.get(name_or_uuid, filters)
        users = referenced_by(f.name, filters)
        if users:
            names = ", ".join(f"'{u}'" for u in users)
            which = "filter" if len(users) == 1 else "filters"
            raise InUseError(f"filter '{f.name}' is referenced by {which} {names}")
        if before_save is not None:
            before_save({n: g for n, g in filters.items() if n != f.name})
        if save:
            with fs_errors(self.path(f.name), "remove"):
                remove_file(self.path(f.name))
        return f


@contextlib.contextmanager
def fs_errors(path: Path, verb: str) -> Iterator[None]:
    """Report a failed file operation as a user error naming the file."""
    try:
        yield
    except OSError as exc:
        cls = PermissionDeniedError if isinstance(exc, PermissionError) else NwguardError
        raise cls(f"{path}: cannot {verb}: {exc.strerror}") from exc


def _derived_uuid(name: str, record: list[str]) -> str:
    import uuid as uuidlib

    record.append(name)
    return str(uuidlib.uuid5(uuidlib.UUID(_UUID_NS), name))


# ----------------------------------------------------------------------------- checks


def check_define(new: Filter, filters: Mapping[str, Filter]) -> Filter | None:
    """libvirt's identity and loop checks for defining ``new``; return the filter it replaces.

    >>> a = Filter("a", "00000000-0000-0000-0000-00000000000a")
    >>> check_define(a, {}) is None
    True
    >>> check_define(Filter("b", a.uuid), {"a": a})
    Traceback (most recent call last):
    ...
    nwguard.errors.ConflictError: filter with same UUID but different name ('a') already exists
    """
    for f in filters.values():
        if f.uuid == new.uuid and f.name != new.name:
            raise ConflictError(
                f"filter with same UUID but different name ('{f.name}') already exists"
            )
    old = filters.get(new.name)
    if old is not None and old.uuid != new.uuid:
        raise ConflictError(f"filter '{new.name}' already exists with uuid {old.uuid}")
    loop = find_loop(new, filters)
    if loop:
        raise LoopError("filter would introduce a loop: " + " -> ".join(loop))
    return old


def find_loop(new: Filter, filters: Mapping[str, Filter]) -> list[str] | None:
    """The reference path from ``new`` back to itself through the stored filters, if any.

    References to filters that do not exist are allowed (checked when a port is bound).

    >>> from nwguard.model.filter import FilterRef
    >>> a = Filter("a", "00000000-0000-0000-0000-00000000000a", entries=(FilterRef("b"),))
    >>> b = Filter("b", "00000000-0000-0000-0000-00000000000b", entries=(FilterRef("a"),))
    >>> find_loop(a, {"b": b})
    ['a', 'b', 'a']
    """
    graph = {**filters, new.name: new}
    done: set[str] = set()  # fully explored without reaching new.name
    path = [new.name]
    stack = [iter([r.filter for r in new.refs])]
    while stack:
        nxt = next(stack[-1], None)
        if nxt is None:
            stack.pop()
            done.add(path.pop())
            continue
        if nxt == new.name:
            return [*path, nxt]
        if nxt in done or nxt in path or nxt not in graph:
            continue  # 'in path': an old loop not through new.name; do not follow it again
        path.append(nxt)
        stack.append(iter([r.filter for r in graph[nxt].refs]))
    return None


def referenced_by(name: str, filters: Mapping[str, Filter]) -> list[str]:
    """Names of the other filters that hold a ``<filterref>`` to ``name``, sorted."""
    return sorted(
        f.name for f in filters.values() if f.name != name and any(r.filter == name for r in f.refs)
    )


__all__ = ["MARKER", "BuiltinsMarker", "FilterStore", "check_define", "find_loop", "referenced_by"]
