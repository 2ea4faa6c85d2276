"""Watching the kernel's ruleset: ``nft monitor`` events and a structural fingerprint.

Two halves:

* :class:`NftMonitor` runs ``nft monitor`` (text: its lines name the object changed, and each
  transaction ends with ``# new generation N by process PID (comm)``, which the JSON output
  lacks) and calls ``on_foreign(change)`` (a :class:`Change`) when a transaction of *another*
  process touched a table whose name starts with ``nwguard``. The daemon's own transactions are recognised by
  the thread ids of its threads (the kernel reports the committing thread, not the process).
  If ``nft monitor`` dies it is restarted and ``on_foreign`` is called with a text, since
  events may have been lost meanwhile.
* :func:`expected` / :func:`actual` / :func:`compare`: what nwguard's tables must contain
  (from the batches that create them) against what the kernel lists, by structure: tables,
  chains, the number of rules per chain, sets and maps and their number of elements. The
  daemon re-applies when they differ, and logs the difference.

The comparison is structural: a foreign ``nft replace rule`` that keeps the number of rules is
not seen by it (the event still triggers a check, which finds nothing missing).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("nwguardd.monitor")

TABLE_PREFIX = "nwguard"
_GEN = re.compile(r"^# new generation (\d+) by process (\d+) \((.*)\)")
_VERBS = ("add", "delete", "replace", "insert", "update", "flush", "destroy", "create", "reset")


# ----------------------------------------------------------------------------- fingerprints


@dataclass
class Fingerprint:
    """Tables, chains (with rule counts) and sets (with element counts) of some tables."""

    tables: set[tuple[str, str]] = field(default_factory=set)
    chains: dict[tuple[str, str, str], int] = field(default_factory=dict)
    sets: dict[tuple[str, str, str], int] = field(default_factory=dict)
    # sets whose elements the packet path adds (counters): their number of elements is free
    dynamic: set[tuple[str, str, str]] = field(default_factory=set)


def expected(batches: Iterable[dict[str, Any]]) -> Fingerprint:
    """What the kernel holds after applying ``batches`` (each creating its tables anew)."""
    fp = Fingerprint()
    elems: dict[tuple[str, str, str], set[str]] = {}
    for batch in batches:
        for cmd in batch.get("nftables", []):
            verb, body = next(iter(cmd.items()))
            kind, obj = next(iter(body.items()))
            fam = obj["family"]
            if verb in ("delete", "flush"):
                _forget(fp, elems, verb, kind, obj)
                continue
            if verb != "add":
                continue
            if kind == "table":
                fp.tables.add((fam, obj["name"]))
            elif kind == "chain":
                fp.chains.setdefault((fam, obj["table"], obj["name"]), 0)
            elif kind == "rule":
                key = (fam, obj["table"], obj["chain"])
                fp.chains[key] = fp.chains.get(key, 0) + 1
            elif kind in ("set", "map"):
                elems.setdefault((fam, obj["table"], obj["name"]), set())
                if obj.get("stmt"):
                    fp.dynamic.add((fam, obj["table"], obj["name"]))
            elif kind == "element":
                seen = elems.setdefault((fam, obj["table"], obj["name"]), set())
                seen.update(json.dumps(e, sort_keys=True) for e in obj["elem"])
    fp.sets = {k: len(v) for k, v in elems.items()}
    return fp


def _forget(
    fp: Fingerprint,
    elems: dict[tuple[str, str, str], set[str]],
    verb: str,
    kind: str,
    obj: dict[str, Any],
) -> None:
    """A batch's ``delete``/``flush`` of a table or chain (objects added before it go)."""
    fam = obj["family"]
    if kind == "table":
        t = (fam, obj["name"])
        fp.tables.discard(t)
        for d in (fp.chains, elems):
            for key in [k for k in d if k[:2] == t]:
                del d[key]
        fp.dynamic = {k for k in fp.dynamic if k[:2] != t}
    elif kind == "chain":
        key = (fam, obj["table"], obj["name"])
        if verb == "flush":
            if key in fp.chains:
                fp.chains[key] = 0
        else:
            fp.chains.pop(key, None)


def merged(*fps: Fingerprint) -> Fingerprint:
    out = Fingerprint()
    for fp in fps:
        out.tables |= fp.tables
        out.chains.update(fp.chains)
        out.sets.update(fp.sets)
        out.dynamic |= fp.dynamic
    return out


_KINDS = frozenset({"metainfo", "table", "chain", "rule", "set", "map", "element", "flowtable",
                    "counter", "quota", "limit", "ct helper", "ct timeout", "ct expectation",
                    "synproxy", "secmark"})  # fmt: skip


def lean(d: dict[str, Any]) -> Any:
    """A ``json.loads`` object hook keeping of a listing what :func:`actual` reads: rules as
    their chain, chains/sets/maps/tables as their name and elements (each element a
    placeholder), the objects' wrappers; every other object (expressions, element
    values, counters) becomes ``0``. 10,000 ports' listing parses to a few MiB this way."""
    if "expr" in d and "chain" in d:
        return {"chain": d["chain"]}
    if "family" in d and "name" in d:
        return {"name": d["name"], "elem": d.get("elem")}
    if "nftables" in d or (len(d) == 1 and next(iter(d)) in _KINDS):
        return d
    return 0


def actual(
    tables: Iterable[tuple[str, str]], list_json: Callable[[str], dict[str, Any]]
) -> Fingerprint:
    """The fingerprint of ``tables`` in the kernel (``list_json`` runs an nft list command;
    its objects as they are or as :func:`lean` keeps them)."""
    fp = Fingerprint()
    for fam, name in sorted(tables):
        try:
            out = list_json(f"list table {fam} {name}")
        except Exception:  # noqa: BLE001, S112 - no such table (or unreadable): it is missing
            continue
        for item in out.get("nftables", []):
            if not isinstance(item, dict) or not item:
                continue
            kind, obj = next(iter(item.items()))
            if not isinstance(obj, dict):
                continue
            if kind == "table":
                fp.tables.add((fam, name))
            elif kind == "chain":
                fp.chains.setdefault((fam, name, obj["name"]), 0)
            elif kind == "rule":
                key = (fam, name, obj["chain"])
                fp.chains[key] = fp.chains.get(key, 0) + 1
            elif kind in ("set", "map"):
                fp.sets[(fam, name, obj["name"])] = len(obj.get("elem") or [])
    return fp


def compare(want: Fingerprint, have: Fingerprint) -> list[tuple[tuple[str, str], str]]:
    """What differs: ``((family, table), phrase)`` each; empty when the kernel is as it should be."""
    problems: list[tuple[tuple[str, str], str]] = []
    missing_tables = want.tables - have.tables
    for t in sorted(missing_tables):
        problems.append((t, f"table {t[0]} {t[1]} missing"))
    for what, w, h, unit in (("chain", want.chains, have.chains, "rules"),
                             ("set", want.sets, have.sets, "elements")):  # fmt: skip
        for key, n in sorted(w.items()):
            t = (key[0], key[1])
            if t in missing_tables:
                continue
            got = h.get(key)
            if got is None:
                problems.append((t, f"{what} {' '.join(key)} missing"))
            elif got != n and key not in want.dynamic:
                problems.append((t, f"{what} {' '.join(key)} has {got} {unit}, not {n}"))
        for key in sorted(h.keys() - w.keys()):
            t = (key[0], key[1])
            if t in want.tables:
                problems.append((t, f"foreign {what} {' '.join(key)}"))
    return problems


def summarize(problems: list[str], limit: int = 8) -> str:
    if len(problems) <= limit:
        return "; ".join(problems)
    return "; ".join(problems[:limit]) + f"; and {len(problems) - limit} more"


# ----------------------------------------------------------------------------- events


def ours(line: str) -> tuple[str, str, str, str, str] | None:
    """``(verb, kind, family, table, rest)`` of a monitor line about a table of nwguard's.

    Lines read ``<verb> <kind> <family> <table> …`` (``delete rule bridge nwguard c1 handle 4``).
    """
    words = line.split(None, 4)
    if len(words) < 4 or words[0] not in _VERBS or not words[3].startswith(TABLE_PREFIX):
        return None
    return words[0], words[1], words[2], words[3], (words[4] if len(words) > 4 else "")


def touches_ours(line: str) -> bool:
    return ours(line) is not None


_PAST = {"add": "added", "delete": "deleted", "flush": "flushed", "destroy": "deleted",
         "replace": "replaced", "insert": "inserted", "create": "created"}  # fmt: skip


@dataclass
class Change:
    """A foreign transaction that touched nwguard's tables."""

    who: str = ""  # "nft (pid 123)"
    tables: set[tuple[str, str]] = field(default_factory=set)
    destructive: bool = False  # something of ours was deleted or flushed: re-apply, no need to look
    named: dict[str, list[str]] = field(
        default_factory=dict
    )  # "deleted" -> ["table bridge nwguard"]
    counts: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)

    def add(self, verb: str, kind: str, family: str, table: str, rest: str) -> None:
        self.tables.add((family, table))
        self.destructive |= verb in ("delete", "flush", "destroy")
        done = _PAST.get(verb, verb)
        if kind == "table" or (kind == "chain" and len(self.named.get(done, ())) < 4):
            name = f" {rest.split()[0]}" if kind == "chain" and rest else ""
            self.named.setdefault(done, []).append(f"{kind} {family} {table}{name}")
        else:
            self.counts[(done, kind)] += 1

    def __str__(self) -> str:
        parts = []
        for done in sorted({*self.named, *(d for d, _ in self.counts)}):
            items = sorted(self.named.get(done, []), key=lambda x: not x.startswith("table"))
            items += [
                f"{n} {k}{'s' if n > 1 else ''}"
                for (d, k), n in sorted(self.counts.items())
                if d == done
            ]
            parts.append(f"{done} {', '.join(items)}")
        return f"{self.who}: {'; '.join(parts)}"


class OwnThreads:
    """The kernel thread ids of the daemon's threads (recent ones; a bounded record)."""

    def __init__(self, keep: int = 8192) -> None:
        self._ids: collections.OrderedDict[int, None] = collections.OrderedDict()
        self._keep = keep
        self._lock = threading.Lock()
        self.add(os.getpid())

    def add(self, tid: int | None = None) -> None:
        tid = threading.get_native_id() if tid is None else tid
        with self._lock:
            self._ids[tid] = None
            self._ids.move_to_end(tid)
            while len(self._ids) > self._keep:
                self._ids.popitem(last=False)

    def __contains__(self, tid: int) -> bool:
        with self._lock:
            return tid in self._ids


class NftMonitor:
    """A thread reading ``nft monitor``; calls ``on_foreign(change)`` for foreign changes."""

    def __init__(
        self, own: OwnThreads, on_foreign: Callable[[Change | str], None], nft: str = "nft"
    ) -> None:
        self.own, self.on_foreign, self.nft = own, on_foreign, nft
        self._stop = threading.Event()
        self._proc: subprocess.Popen[str] | None = None
        self._thread = threading.Thread(target=self._run, name="nwguardd-monitor", daemon=True)
        self.running = threading.Event()
        self.synced = threading.Event()  # nft monitor has reported a transaction: it listens
        self.restarts = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        self.own.add()
        backoff = 0.1
        while not self._stop.is_set():
            try:
                self._proc = subprocess.Popen(
                    [self.nft, "monitor"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, text=True, errors="replace", bufsize=1,
                )  # fmt: skip
            except OSError as exc:
                log.error("cannot run '%s monitor': %s; relying on periodic checks", self.nft, exc)
                self._stop.wait(5)
                continue
            if self.restarts:
                self.on_foreign("the nft monitor restarted (events may have been lost)")
            self.running.set()
            started = time.monotonic()
            self._read(self._proc)
            self.running.clear()
            self.synced.clear()
            err = self._proc.stderr.read().strip() if self._proc.stderr else ""
            self._proc.wait()
            if self._stop.is_set():
                break
            self.restarts += 1
            log.warning("nft monitor exited (%s)%s; restarting", self._proc.returncode,
                        f": {err.splitlines()[-1]}" if err else "")  # fmt: skip
            backoff = 0.1 if time.monotonic() - started > 10 else min(backoff * 2, 5.0)
            self._stop.wait(backoff)

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        change = None
        for line in proc.stdout:
            m = _GEN.match(line)
            if m is None:
                hit = ours(line)
                if hit is not None:
                    change = change or Change()
                    change.add(*hit)
                continue
            self.synced.set()
            tid, comm = int(m.group(2)), m.group(3)
            if change is not None and tid not in self.own:
                change.who = f"{comm} (pid {tid})"
                self.on_foreign(change)
            change = None
