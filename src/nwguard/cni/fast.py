"""The plugin's light paths: what an ADD or DEL can do without loading nwguard's engine.

The runtime starts the plugin twice per container (ADD, then DEL; each after a VERSION), so
its start-up is most of its cost. This module imports only the standard library and
:mod:`nwguard.errors`:

- :func:`dirs` finds the configuration and state directories as :class:`nwguard.state.paths.Paths`
  does (a unit test pins the two together);
- :func:`maybe_bound` tells a DEL that there is nothing to undo without loading anything;
- :func:`is_bridge_port` asks the kernel (rtnetlink) whether a device has a master;
- :class:`Nwguardd` talks to a running nwguardd (:mod:`nwguard.daemon.protocol`'s
  newline-delimited JSON) so the daemon does the binding: no engine load in the plugin.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from nwguard.errors import ALL_ERRORS, ConflictError, NwguardError

if TYPE_CHECKING:
    import socket

BINDING_DIR = "nwfilter-binding"  # Paths.binding_dir, under the state directory
SOCKET, SOCKET_RO = "nwguardd.sock", "nwguardd-ro.sock"  # Paths.socket, Paths.socket_ro
CONNECT_TIMEOUT = 1.0
CALL_TIMEOUT = 120.0  # a binding on a loaded host; the runtime has its own time-out too


def dirs(config_dir: str | None, state_dir: str | None) -> tuple[str, str]:
    """``(config dir, state dir)`` as ``Paths.from_env(config_dir, state_dir)`` gives them."""
    root = os.geteuid() == 0
    cfg = config_dir or os.environ.get("NWGUARD_CONFIG_DIR")
    st = state_dir or os.environ.get("NWGUARD_STATE_DIR")
    if not cfg:
        cfg = "/etc/nwguard" if root else os.path.join(os.path.expanduser("~"), ".config/nwguard")
    if not st:
        st = (
            "/run/nwguard"
            if root
            else os.path.join(os.environ.get("XDG_RUNTIME_DIR", "/tmp"), "nwguard")
        )
    return cfg, st


_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-")


def maybe_bound(state_dir: str, owner: str) -> bool:
    """False only when no binding of ``owner`` can exist: no binding file holds its name.

    Bindings are files in the state directory (``<owner><name>…</name>``); an owner name with
    characters XML might escape is always "maybe" (the caller then asks nwguard).
    """
    if not set(owner) <= _PLAIN:
        return True
    needle = f"<name>{owner}</name>".encode()
    try:
        entries = list(os.scandir(os.path.join(state_dir, BINDING_DIR)))
    except FileNotFoundError:
        return False
    for entry in entries:
        try:
            with open(entry.path, "rb") as f:
                if needle in f.read():
                    return True
        except FileNotFoundError:
            continue  # removed meanwhile
    return False


# ----------------------------------------------------------------------------- rtnetlink

# One RTM_GETLINK by name: pyroute2 would double the plugin's start-up, and ``ip`` costs a
# fork and exec per device. /sys is no answer: it may show another network namespace.
_RTM_NEWLINK, _RTM_GETLINK = 16, 18
_IFLA_IFNAME, _IFLA_MASTER = 3, 10


def is_bridge_port(name: str) -> bool:
    """Whether device ``name`` of this network namespace has a master (a bridge)."""
    import socket
    import struct

    _NLMSG, _IFINFO, _RTA = struct.Struct("=IHHII"), struct.Struct("=BxHiII"), struct.Struct("=HH")
    attr = name.encode() + b"\0"
    rta = _RTA.pack(_RTA.size + len(attr), _IFLA_IFNAME) + attr
    rta += b"\0" * (-len(rta) % 4)
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + rta
    msg = _NLMSG.pack(_NLMSG.size + len(body), _RTM_GETLINK, 1, 1, 0) + body  # NLM_F_REQUEST
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as s:
        s.sendall(msg)
        reply = s.recv(1 << 16)
    _len, kind, _flags, _seq, _pid = _NLMSG.unpack_from(reply)
    if kind != _RTM_NEWLINK:
        return False  # NLMSG_ERROR: no such device
    pos = _NLMSG.size + _IFINFO.size
    while pos + _RTA.size <= len(reply):
        size, rtype = _RTA.unpack_from(reply, pos)
        if size < _RTA.size:
            break
        if rtype == _IFLA_MASTER:
            return bool(struct.unpack_from("=I", reply, pos + _RTA.size)[0])
        pos += (size + 3) & ~3
    return False


# ----------------------------------------------------------------------------- nwguardd


class Nwguardd:
    """A connection to nwguardd's control socket; :meth:`call` runs one facade method.

    The wire format is :mod:`nwguard.daemon.protocol`'s (arguments here are plain strings,
    which travel untagged); errors come back as the exception class of their code.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.info: dict[str, Any] = {}
        self._buf = b""
        self._id = 0
        self._owners: list[tuple[str, str]] | None = None

    def call(self, method: str, *args: str) -> Any:
        return self.calls((method, *args))[0]

    def calls(self, *requests: tuple[str, ...]) -> list[Any]:
        """Send ``(method, arg, ...)`` requests at once (one wake-up of the daemon, not one a
        request: on a loaded host each costs a scheduling delay); their results in order."""
        first = self._id + 1
        lines = []
        for method, *args in requests:
            self._id += 1
            lines.append(request(self._id, method, tuple(args)))
        self.sock.sendall(b"".join(lines))
        results = []
        for want in range(first, self._id + 1):
            msg = json.loads(self._line())
            err = msg.get("error")
            if err is not None:
                cls = ALL_ERRORS.get(str(err.get("code")), NwguardError)
                raise cls(str(err.get("message") or "unknown error"))
            if msg.get("id") != want:
                raise NwguardError(f"nwguardd answered request {msg.get('id')!r}, not {want}")
            results.append(msg.get("result"))
        return results

    def _line(self) -> bytes:
        while b"\n" not in self._buf:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise NwguardError("nwguardd closed the connection")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def close(self) -> None:
        self.sock.close()

    # BindingStore (nwguard.cni.attachment)
    def owners(self) -> list[tuple[str, str]]:
        """``(owner, port)`` of every binding (as :func:`connect` fetched them, the first time)."""
        if self._owners is None:
            self._owners = _owners(self.call("nwfilter_binding_list"))
        got, self._owners = self._owners, None
        return got

    def create(self, xml: str) -> None:
        self.call("nwfilter_binding_create", xml)

    def delete(self, port: str) -> None:
        self.call("nwfilter_binding_delete", port)


def _owners(bindings: list[dict[str, str]]) -> list[tuple[str, str]]:
    import xml.etree.ElementTree as ET

    out = []
    for item in bindings:
        root = ET.fromstring(item["$binding"])
        port = root.find("portdev")
        out.append(
            (root.findtext("owner/name", ""), port.get("name", "") if port is not None else "")
        )
    return out


def request(req_id: int, method: str, args: tuple[str, ...] = ()) -> bytes:
    """One request line (``nwguard.daemon.protocol.request`` for string arguments)."""
    msg = {"id": req_id, "method": method, "params": {"args": list(args), "kwargs": {}}}
    return json.dumps(msg, separators=(",", ":")).encode() + b"\n"


def connect(config_dir: str, state_dir: str) -> Nwguardd | None:
    """The nwguardd serving ``state_dir``, or None (not running, not root, or turned off by
    ``NWGUARD_NO_DAEMON``: the caller then binds in-process). Its bindings come with its
    ``daemon.info``: an ADD or DEL needs them first.

    A daemon serving another configuration directory is a ConflictError, as for the CLI.
    """
    if os.environ.get("NWGUARD_NO_DAEMON", "") not in ("", "0") or os.geteuid() != 0:
        return None
    path = os.path.join(state_dir, SOCKET)
    if not os.path.exists(path):
        return None
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(CONNECT_TIMEOUT)
        sock.connect(path)
        link = Nwguardd(sock)
        info, bindings = link.calls(("daemon.info",), ("nwfilter_binding_list",))
        link.info, link._owners = info, _owners(bindings)
    except (OSError, ValueError, NwguardError):
        sock.close()
        return None  # a stale socket, or not nwguardd: in-process
    sock.settimeout(CALL_TIMEOUT)
    theirs = str(link.info.get("config_dir", ""))
    if os.path.realpath(theirs) != os.path.realpath(config_dir):
        sock.close()
        raise ConflictError(
            f"nwguardd (pid {link.info.get('pid')}) serves state directory {state_dir} with "
            f"configuration directory {theirs}, not {config_dir}: configure the same configDir"
        )
    return link
