"""Send libnftables JSON to the kernel: the one place nwguard talks to nftables.

Uses the ``nftables`` binding over the system's libnftables (as firewalld does): no
subprocess, no shell, no text splicing. A batch is one transaction: all or nothing.

>>> apply({"nftables": []})  # an empty batch is a no-op  # doctest: +SKIP
"""

from __future__ import annotations

import threading
from typing import Any

from ..errors import ApplyError

_local = threading.local()


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


def apply(batch_json: dict[str, Any]) -> None:
    """Apply one JSON batch (``{"nftables": [...]}``) as a single transaction.

    Raises :class:`ApplyError` with nft's own message when the kernel refuses it; then
    nothing of the batch is in force.
    """
    if not batch_json.get("nftables"):
        return
    rc, _out, err = _handle().json_cmd(batch_json)
    if rc != 0:
        raise ApplyError(f"nftables refused the transaction: {_one_line(err)}")


def run_json(cmd: str) -> dict[str, Any]:
    """Run a read-only nft command (e.g. ``list table inet x``) and return its JSON.

    Raises :class:`ApplyError` with nft's message on failure (e.g. no such table).
    """
    import json

    rc, out, err = _handle().cmd(cmd)
    if rc != 0:
        raise ApplyError(f"nft {cmd!r} failed: {_one_line(err)}")
    return json.loads(out) if out else {"nftables": []}


def _one_line(err: str) -> str:
    lines = [ln.strip() for ln in (err or "").splitlines() if ln.strip()]
    return " / ".join(lines) or "no message"
