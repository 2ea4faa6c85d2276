"""The client side of ``nwguardd``'s socket: an object with the Client's methods.

:func:`maybe_proxy` returns a :class:`DaemonProxy` when the daemon of the client's state
directory answers, else ``None`` (the caller then runs embedded). The proxy is a
:class:`~nwguard.api.Client` whose every facade method (:data:`nwguard.api.METHODS`) is
forwarded by name; it gives back the same Python objects the embedded Client returns (model
objects travel as their XML), and raises the same exception classes (by their stable code).

* ``NWGUARD_NO_DAEMON=1`` forces embedded; so does ``dry_run`` (a dry run only computes, so it
  needs no daemon, and prints the batch the embedded engine built).
* root talks to the control socket; other users to the read-only one (queries only).
* A daemon serving another configuration directory is an error, not a silent fallback:
  running embedded on the daemon's state directory with different filters would fight it.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nwguard.api import METHODS, Client
from nwguard.daemon import protocol as P
from nwguard.errors import ConflictError, HostError

if TYPE_CHECKING:
    from nwguard.engine.context import Context

CONNECT_TIMEOUT = 1.0
CALL_TIMEOUT = 900.0  # a rebuild of very many ports may take a while; never hang for ever


class DaemonProxy(Client):
    """Stands in for :class:`nwguard.api.Client`, running each facade method in ``nwguardd``.

    It builds no services: every method of :data:`~nwguard.api.METHODS` is replaced below by
    one that forwards it (with the facade's signature and docstring, for ``help()``).
    """

    def __init__(
        self, ctx: Context | None, sock: socket.socket, info: dict[str, Any], path: Path
    ) -> None:
        self.ctx = ctx  # type: ignore[assignment]  # None when only the socket is known
        self.daemon = info
        self.socket_path = path
        self._sock = sock
        self._reader = P.LineReader(sock, limit=1 << 30)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Run ``method`` in the daemon; its result, or its error re-raised here."""
        return self._exchange(method, args, kwargs, decoded=True)

    def call_raw(self, method: str, *args: Any) -> Any:
        """:meth:`call`, its result left as sent: model objects as ``{"$binding": xml}``...,
        records as ``{"$dc": name, "f": fields}`` (for a caller that needs a field or two of
        them, and not the modules that parse them: the CLI's start-up)."""
        return self._exchange(method, args, {}, decoded=False)

    def _exchange(
        self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], *, decoded: bool
    ) -> Any:
        with self._lock:
            if self._sock is None:
                raise HostError("the connection to nwguardd is closed")
            req_id = next(self._ids)
            try:
                self._sock.sendall(P.request(req_id, method, args, kwargs))
                line = self._reader.readline()
            except (OSError, P.LineTooLong) as exc:
                self.close()
                raise HostError(f"lost the connection to nwguardd during {method}: {exc}") from None
            if line is None:
                self.close()
                raise HostError(f"nwguardd closed the connection during {method}")
            got_id, result = P.parse_response(line, decoded=decoded)
            if got_id != req_id:
                self.close()
                raise P.ProtocolError(f"nwguardd answered request {got_id!r}, not {req_id!r}")
            return result

    def daemon_reapply(self) -> None:
        """Ask the daemon to re-send every rule (what SIGHUP does)."""
        self.call("daemon.reapply")

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None  # type: ignore[assignment]

    def __del__(self) -> None:  # pragma: no cover - best effort
        with contextlib.suppress(Exception):
            self.close()


def _forwarder(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    def forward(self: DaemonProxy, *args: Any, **kwargs: Any) -> Any:
        return self.call(name, *args, **kwargs)

    return functools.wraps(method)(forward)


for _name in METHODS:
    setattr(DaemonProxy, _name, _forwarder(_name, getattr(Client, _name)))


def connect(
    path: Path, timeout: float = CONNECT_TIMEOUT
) -> tuple[socket.socket, dict[str, Any]] | None:
    """Connect to a daemon socket and ask ``daemon.info``; None if nobody answers."""
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    except OSError:
        return None
    try:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(P.request(0, "daemon.info"))
        line = P.LineReader(sock, limit=1 << 20).readline()
    except (OSError, P.ProtocolError):
        sock.close()
        return None
    if line is None:
        sock.close()
        return None
    try:
        _id, info = P.parse_response(line)
    except Exception:
        sock.close()
        raise
    sock.settimeout(CALL_TIMEOUT)
    return sock, info


def maybe_proxy(client: Client) -> DaemonProxy | None:
    """A proxy to the daemon of ``client``'s state directory, or None to run embedded."""
    return proxy_for(client.ctx)


def proxy_for(ctx: Context) -> DaemonProxy | None:
    """A proxy to the daemon of ``ctx``'s state directory, or None to run embedded (no
    services built: a served command loads no engine)."""
    if os.environ.get("NWGUARD_NO_DAEMON", "") not in ("", "0"):
        return None
    if ctx.dry_run:
        return None
    paths = ctx.paths
    path = paths.socket if os.geteuid() == 0 else paths.socket_ro
    if not path.exists():
        return None
    got = connect(path)
    if got is None:
        return None
    sock, info = got
    mine, theirs = _real(paths.config_dir), _real(Path(str(info.get("config_dir", ""))))
    if mine != theirs:
        sock.close()
        raise ConflictError(
            f"nwguardd (pid {info.get('pid')}) serves state directory {paths.state_dir} with "
            f"configuration directory {theirs}, not {mine}: use the same --config-dir, or stop it"
        )
    return DaemonProxy(ctx, sock, info, path)


def _real(p: Path) -> Path:
    try:
        return p.resolve()
    except OSError:
        return p.absolute()


def xml_outline(xml: str) -> tuple[dict[str, str], dict[str, tuple[dict[str, str], str]]]:
    """The root element's attributes and, per child element name, the first such child's
    attributes and text: enough of a model object's XML (``call_raw``) for a name or a UUID,
    read with expat (parsing it into the model needs lxml and the model's modules)."""
    from xml.parsers import expat

    root: dict[str, str] = {}
    children: dict[str, tuple[dict[str, str], list[str]]] = {}
    depth = 0
    current: list[str] | None = None

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal depth, current
        depth += 1
        if depth == 1:
            root.update(attrs)
        elif depth == 2 and name not in children:
            current = []
            children[name] = (dict(attrs), current)

    def end(_name: str) -> None:
        nonlocal depth, current
        if depth == 2:
            current = None
        depth -= 1

    def text(data: str) -> None:
        if current is not None and depth == 2:
            current.append(data)

    parser = expat.ParserCreate()
    parser.StartElementHandler, parser.EndElementHandler = start, end
    parser.CharacterDataHandler = text
    parser.Parse(xml, True)
    return root, {n: (a, "".join(t)) for n, (a, t) in children.items()}
