"""Send rendered batches to the kernel: the one place nwguard talks to nftables.

Uses the ``nftables`` binding over the system's libnftables (as firewalld does): no
subprocess, no shell, no text splicing. A batch is one transaction: all or nothing.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from typing import Any

from nwguard.backends.nft.render import NftBatch, TypeofSet, to_nft
from nwguard.errors import ApplyError
from nwguard.ir.nodes import Batch
from nwguard.ir.ports import PortBatch

_local = threading.local()
_sent = False  # a transaction of this process was committed (see release_after_exit)


def _handle() -> Any:
    """One libnftables context per thread (the library is not thread-safe)."""
    nft = getattr(_local, "nft", None)
    if nft is None:
        import nftables

        nft = nftables.Nftables()
        nft.set_json_output(True)
        nft.set_handle_output(True)
        _local.nft = nft
    return nft


class NftExecutor:
    """The :class:`nwguard.backends.Executor` of the nftables backend."""

    name = "nftables"

    def apply(self, batch: Batch | PortBatch) -> None:
        apply(to_nft(batch))


def apply(nft: NftBatch) -> None:
    """Apply one rendered batch as a single transaction.

    Raises :class:`ApplyError` with nft's own message when the kernel refuses it; then
    nothing of the batch is in force.

    Sets declared with ``typeof`` (a key of raw loads) cannot be created in JSON by
    libnftables 1.0.6: they are created first, empty, in nft syntax (a change that filters
    nothing), and a ``delete table`` of their table becomes a wipe of its contents, so the
    rest is still one transaction.
    """
    text, cmds = plan(nft)
    if text:
        rc, _out, err = _handle().cmd("\n".join(text))
        if rc != 0:
            raise ApplyError(f"nftables refused the typeof sets: {_one_line(err)}")
    if not cmds:
        return
    rc, _out, err = _handle().json_cmd({"nftables": cmds})
    if rc != 0:
        raise ApplyError(f"nftables refused the transaction: {_one_line(err)}")
    global _sent
    _sent = True


def release_after_exit() -> int | None:
    """Let a child drop this process's nftables netlink sockets once it has exited.

    After a transaction that deleted anything, the kernel's release of such a socket waits
    for the deferred freeing of what was deleted (an RCU grace period: 6 to 24 ms measured
    here), and a one-shot command would wait for it at exit. The child keeps the netlink
    sockets and nothing else (pipes see their end, file locks go with this process) until
    this process is gone, then exits. The child's pid, or None when nothing was sent."""
    if not _sent:
        return None
    keep = netlink_fds()
    r, _w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        try:
            for fd in _open_fds():
                if fd not in keep and fd != r:
                    with contextlib.suppress(OSError):  # the listing's own descriptor
                        os.close(fd)
            os.read(r, 1)  # end of file: this process has exited
        finally:
            os._exit(0)
    os.close(r)
    return pid  # ``_w`` stays open, unused, until this process exits


def _open_fds() -> list[int]:
    return [int(fd) for fd in os.listdir("/proc/self/fd")]


def netlink_fds() -> set[int]:
    """This process's netlink sockets (by inode, from ``/proc/self/net/netlink``)."""
    try:
        with open("/proc/self/net/netlink") as f:
            inodes = {line.split()[-1] for line in f.readlines()[1:]}
    except OSError:
        return set()
    out = set()
    for fd in _open_fds():
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            out.add(fd)
    return out


def plan(nft: NftBatch) -> tuple[list[str], list[dict[str, Any]]]:
    """What :func:`apply` sends: nft-syntax commands first (typeof sets), then one JSON batch.

    Read-only (it may list a table whose contents a full replace must wipe).
    """
    if not nft.typeof_sets:
        return [], list(nft.commands)
    return _with_typeof_sets(nft.commands, nft.typeof_sets)


def _with_typeof_sets(
    cmds: tuple[dict[str, Any], ...], typeof_sets: tuple[TypeofSet, ...]
) -> tuple[list[str], list[dict[str, Any]]]:
    """The nft-syntax commands creating the typeof sets, and the JSON that remains."""
    tables = {(s.family, s.table) for s in typeof_sets}
    text = [f"add table {f} {t}" for f, t in sorted(tables)]
    text += [
        f"add set {s.family} {s.table} {s.name} {{ typeof {s.typeof} ; }}"
        for s in sorted(typeof_sets, key=lambda s: (s.family, s.table, s.name))
    ]
    out: list[dict[str, Any]] = []
    for c in cmds:
        table = c.get("delete", {}).get("table")
        if table and (table["family"], table["name"]) in tables:
            keep = {
                s.name
                for s in typeof_sets
                if (s.family, s.table) == (table["family"], table["name"])
            }
            out += _wipe_table(table["family"], table["name"], keep)
            continue
        out.append(c)
    return text, out


def _wipe_table(family: str, table: str, keep_sets: set[str]) -> list[dict[str, Any]]:
    """Commands that empty a table but keep it and ``keep_sets`` (emptied)."""
    nft = _handle()
    nft.set_terse_output(True)
    try:
        rc, out, _err = nft.cmd(f"list table {family} {table}")
    finally:
        nft.set_terse_output(False)
    if rc != 0:
        return []  # no such table: nothing to wipe
    import json

    objs = json.loads(out).get("nftables", [])
    ref = {"family": family, "table": table}
    chains = [o["chain"]["name"] for o in objs if "chain" in o]
    cmds: list[dict[str, Any]] = [{"flush": {"chain": {**ref, "name": c}}} for c in chains]
    for o in objs:
        kind = "set" if "set" in o else "map" if "map" in o else None
        if kind is None:
            continue
        name = o[kind]["name"]
        verb = "flush" if name in keep_sets else "delete"
        cmds.append({verb: {kind: {**ref, "name": name}}})
    cmds += [{"delete": {"chain": {**ref, "name": c}}} for c in chains]
    return cmds


def run_json(cmd: str) -> dict[str, Any]:
    """Run a read-only nft command (e.g. ``list table inet x``) and return its JSON.

    Raises :class:`ApplyError` with nft's message on failure (e.g. no such table).
    """
    import json

    rc, out, err = _handle().cmd(cmd)
    if rc != 0:
        raise ApplyError(f"nft {cmd!r} failed: {_one_line(err)}")
    return json.loads(out) if out else {"nftables": []}


def run_json_apart(
    cmd: str, object_hook: Callable[[dict[str, Any]], Any] | None = None
) -> dict[str, Any]:
    """:func:`run_json` in a child ``nft`` process: libnftables' cache of a listed table
    (over 100 MiB for 10,000 ports' elements) is the child's, never this process's, which
    glibc would not give back. ``cmd`` is one of nwguard's own list commands (split on
    blanks into argv; no shell). ``object_hook`` as for :func:`json.loads`."""
    import json
    import subprocess

    out = subprocess.run(
        ["nft", "-j", *cmd.split()], capture_output=True, text=True, check=False, timeout=60
    )
    if out.returncode != 0:
        raise ApplyError(f"nft {cmd!r} failed: {_one_line(out.stderr)}")
    text = out.stdout.strip()
    return json.loads(text, object_hook=object_hook) if text else {"nftables": []}


def _one_line(err: str) -> str:
    lines = [ln.strip() for ln in (err or "").splitlines() if ln.strip()]
    return " / ".join(lines) or "no message"
