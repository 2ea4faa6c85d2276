"""The persistence helper: round trips, atomic replacement, schema versions, the lock."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import re
from pathlib import Path
from typing import Any

import pytest

from nwguard.errors import NwguardError, StateError
from nwguard.records import ValueRecord
from nwguard.state.persist import Document, Format, RecordDir, SchemaVersionError


class Counter(ValueRecord):
    name: str
    n: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "n": self.n}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Counter:
        return cls(d["name"], int(d["n"]))


COUNTER = Format("counter", 1, Counter.from_json)


def _doc(tmp_path: Path, fmt: Format[Counter] = COUNTER) -> Document[Counter]:
    return Document(tmp_path / "c.json", fmt, lock=tmp_path / "c.lock")


def test_round_trip_and_the_file_carries_its_version(tmp_path: Path) -> None:
    doc = _doc(tmp_path)
    assert doc.read() is None and not doc.exists()
    doc.write(Counter("a", 3))
    assert doc.read() == Counter("a", 3)
    assert json.loads(doc.path.read_text()) == {"version": 1, "name": "a", "n": 3}
    doc.remove()
    doc.remove()  # removing twice is fine
    assert doc.read() is None


def test_indent_makes_files_for_people(tmp_path: Path) -> None:
    doc = Document(tmp_path / "c.json", Format("counter", 1, Counter.from_json, indent=2))
    doc.write(Counter("a"))
    assert doc.path.read_text().splitlines()[1:3] == ['  "version": 1,', '  "name": "a",']


def test_a_record_that_cannot_be_written_leaves_the_old_file(tmp_path: Path) -> None:
    doc = _doc(tmp_path)
    doc.write(Counter("a", 1))
    before = doc.path.read_bytes()
    with pytest.raises(TypeError):
        doc.write(Counter("a", object()))  # type: ignore[arg-type]  # not JSON
    assert doc.path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json"]


def test_a_failed_rename_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch) -> None:
    doc = _doc(tmp_path)
    doc.write(Counter("a", 1))

    def refuse(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="No space"):
        doc.write(Counter("a", 2))
    monkeypatch.undo()
    assert doc.read() == Counter("a", 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json"]


def test_a_dict_with_version_is_refused_before_writing(tmp_path: Path) -> None:
    bad: Format[Counter] = Format("counter", 1, Counter.from_json, lambda c: {"version": 7})
    with pytest.raises(ValueError, match="schema version"):
        _doc(tmp_path, bad).write(Counter("a"))
    assert not (tmp_path / "c.json").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"version": 2, "name": "a", "n": 1}', r"schema version 2 \(written by a newer nwguard\); this nwguard reads versions 1 to 1"),
        ('{"version": 0, "name": "a", "n": 1}', "schema version 0;"),
        ('{"version": "1", "name": "a", "n": 1}', "schema version '1';"),
        ('{"name": "a", "n": 1}', "schema version None;"),  # unversioned files not accepted
    ],
)  # fmt: skip
def test_other_versions_are_refused_naming_the_file(
    tmp_path: Path, content: str, message: str
) -> None:
    doc = _doc(tmp_path)
    doc.path.write_text(content)
    with pytest.raises(SchemaVersionError, match=message) as info:
        doc.read()
    assert str(info.value).startswith(f"{doc.path}: counter file of schema version")
    assert isinstance(info.value, NwguardError) and info.value.code == "bad-state"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a counter file (not JSON"),
        ("[1, 2]", "not a counter file (not a JSON object)"),
        (b"\xff\xfe", "not a counter file (not JSON"),
        ('{"version": 1, "n": 1}', "not a valid counter file (version 1): missing 'name'"),
        ('{"version": 1, "name": "a", "n": "x"}', "not a valid counter file (version 1): invalid literal"),
    ],
)  # fmt: skip
def test_damaged_files_are_a_state_error_never_a_key_error(
    tmp_path: Path, content: str | bytes, message: str
) -> None:
    doc = _doc(tmp_path)
    if isinstance(content, bytes):
        doc.path.write_bytes(content)
    else:
        doc.path.write_text(content)
    with pytest.raises(StateError, match=re.escape(message)) as info:
        doc.read()
    assert not isinstance(info.value, SchemaVersionError)
    assert str(info.value).startswith(f"{doc.path}: ")


def test_old_versions_are_migrated_step_by_step(tmp_path: Path) -> None:
    fmt = Format(
        "counter", 3, Counter.from_json,
        migrations={1: lambda d: {**d, "n": d.pop("count")}, 2: lambda d: {**d, "n": d["n"] * 10}},
        unversioned=1,
    )  # fmt: skip
    doc = _doc(tmp_path, fmt)
    doc.path.write_text('{"name": "a", "count": 2}')  # written before versions existed
    assert doc.read() == Counter("a", 20)
    doc.path.write_text('{"version": 2, "name": "a", "n": 2}')
    assert doc.read() == Counter("a", 20)
    doc.write(Counter("a", 5))
    assert json.loads(doc.path.read_text())["version"] == 3 and doc.read() == Counter("a", 5)


def test_migrations_must_reach_the_current_version() -> None:
    with pytest.raises(ValueError, match="cover versions 1 to 2"):
        Format("counter", 3, Counter.from_json, migrations={1: dict})


def test_update_without_a_lock_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no lock"):
        Document(tmp_path / "c.json", COUNTER).update(lambda c: c)


def _increment(path: str, times: int, start: Any) -> None:
    start.wait()
    doc = Document(Path(path) / "c.json", COUNTER, lock=Path(path) / "c.lock")
    for _ in range(times):
        doc.update(lambda c: Counter("shared", (c.n if c else 0) + 1))


def test_concurrent_writers_under_the_lock_lose_nothing(tmp_path: Path) -> None:
    procs, times = 4, 50
    ctx = mp.get_context("fork")
    start = ctx.Event()
    workers = [
        ctx.Process(target=_increment, args=(str(tmp_path), times, start)) for _ in range(procs)
    ]
    for w in workers:
        w.start()
    start.set()
    for w in workers:
        w.join(timeout=60)
    assert [w.exitcode for w in workers] == [0] * procs
    assert _doc(tmp_path).read() == Counter("shared", procs * times)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_update_returning_none_removes(tmp_path: Path) -> None:
    doc = _doc(tmp_path)
    doc.write(Counter("a"))
    assert doc.update(lambda c: None) is None and not doc.exists()


# ----------------------------------------------------------------------------- directories


def test_a_directory_of_records(tmp_path: Path) -> None:
    d = RecordDir(tmp_path / "ports", COUNTER)
    assert d.keys() == [] and d.items() == {}
    d.put("vnet1", Counter("vnet1", 1))
    d.put("vnet0", Counter("vnet0", 0))
    (d.dir / ".vnet2.json.12.34.tmp").write_text("{")  # a writer's temporary file
    (d.dir / "notes.txt").write_text("x")
    assert d.keys() == ["vnet0", "vnet1"]
    assert d.items() == {"vnet0": Counter("vnet0", 0), "vnet1": Counter("vnet1", 1)}
    assert d.exists("vnet0") and not d.exists("vnet9")
    assert d.prune({"vnet1"}) == ["vnet0"] and d.keys() == ["vnet1"]
    d.remove("vnet1")
    d.remove("vnet1")
    assert d.keys() == []


@pytest.mark.parametrize("key", ["", "../x", "a/b", ".hidden", "nul\0"])
def test_keys_that_are_no_file_name_name_no_record(tmp_path: Path, key: str) -> None:
    d = RecordDir(tmp_path, COUNTER)
    assert d.get(key) is None and not d.exists(key)
    d.remove(key)
    with pytest.raises(ValueError, match="cannot name a counter file"):
        d.put(key, Counter("x"))


def test_items_can_skip_unreadable_files(tmp_path: Path) -> None:
    d = RecordDir(tmp_path, COUNTER)
    d.put("good", Counter("good"))
    (tmp_path / "bad.json").write_text('{"version": 9}')
    with pytest.raises(SchemaVersionError, match="bad.json"):
        d.items()
    skipped: list[str] = []
    assert d.items(on_error=lambda key, exc: skipped.append(key)) == {"good": Counter("good")}
    assert skipped == ["bad"]


def test_the_applied_kernel_state_fits(tmp_path: Path) -> None:
    """engine/ports' layout: per-port files plus one shared file, atomic each, no fsync."""

    class Templates(ValueRecord):
        chains: dict[str, Any]

        def to_json(self) -> dict[str, Any]:
            return {"chains": self.chains}

        @classmethod
        def from_json(cls, d: dict[str, Any]) -> Templates:
            return cls(d["chains"])

    templates = Document(tmp_path / "templates.json", Format("templates", 2, Templates.from_json))
    ports = RecordDir(tmp_path / "ports", Format("port state", 1, Counter.from_json, unversioned=1))
    (tmp_path / "templates.json").write_text(
        '{"version": 2, "chains": {"c": [1]}}'
    )  # as written today
    (tmp_path / "ports").mkdir()
    (tmp_path / "ports" / "vnet0.json").write_text('{"name": "vnet0", "n": 1}')  # unversioned today
    assert templates.read() == Templates({"c": [1]})
    assert ports.items() == {"vnet0": Counter("vnet0", 1)}
    assert not templates.durable and not ports.durable
