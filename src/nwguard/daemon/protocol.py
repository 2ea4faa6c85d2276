"""The wire protocol of ``nwguardd``: newline-delimited JSON over a Unix stream socket.

Request (one line)::

    {"id": 1, "method": "nwfilter_binding_create", "params": {"args": ["<filterbinding>…"],
                                                               "kwargs": {}}}

Response (one line), in request order::

    {"id": 1, "result": …}
    {"id": 1, "error": {"code": "not-found", "message": "no filter binding for port 'x'"}}

``code`` is the stable code of :mod:`nwguard.errors` (``ALL_ERRORS`` maps it back to the
exception class), plus ``protocol`` for requests the daemon cannot read. A line longer than
:data:`MAX_LINE` bytes gets an error and the connection is closed.

Methods are listed in :data:`KINDS`: the facade's (:data:`nwguard.api.METHODS`) and the
daemon's own ``daemon.info`` and ``daemon.reapply``, each a query or a change; any other name
is refused. The read-only socket accepts only queries (:func:`is_query`).

Values: JSON types as they are; other values carry a ``$`` tag so each side rebuilds the same
Python object: ``{"$bytes": base64}``, ``{"$tuple": […]}``, ``{"$map": [[k, v], …]}`` (a dict
whose keys are not all plain strings), ``{"$ip": "10.0.0.1"}``, ``{"$path": "/x"}``, model
objects as their XML (``{"$filter": xml}``, ``{"$binding": xml}``, ``{"$network": xml}``) and
other nwguard dataclasses and records field by field (``{"$dc": "nwguard.mod:Class", "f":
{…}}``; only in results, only classes of nwguard's own modules).

>>> decode(json.loads(json.dumps(encode({"a": (1, b"x")}))))
{'a': (1, b'x')}
"""

from __future__ import annotations

import base64
import importlib
import ipaddress
import json
from pathlib import PurePath
from typing import Any

from nwguard.api import CHANGE, METHODS, QUERY, Kind
from nwguard.errors import ALL_ERRORS, NwguardError
from nwguard.records import Record

MAX_LINE = 4 << 20  # bytes per request line

KINDS: dict[str, Kind] = {**METHODS, "daemon.info": QUERY, "daemon.reapply": CHANGE}
"""Every method a client may call, and whether it only reads."""


class ProtocolError(NwguardError):
    """A request the daemon cannot read: not JSON, too long, unknown method, bad arguments."""

    code = "protocol"


ERRORS: dict[str, type[NwguardError]] = {**ALL_ERRORS, ProtocolError.code: ProtocolError}


def is_query(method: str) -> bool:
    """True for the methods the read-only socket allows: the queries of :data:`KINDS`."""
    return KINDS.get(method) == QUERY


def check_method(method: Any) -> str:
    """``method`` if it is one of :data:`KINDS`; ProtocolError otherwise."""
    if not isinstance(method, str) or method not in KINDS:
        raise ProtocolError(f"unknown method {str(method)[:80]!r}")
    return method


# ----------------------------------------------------------------------------- values


def encode(value: Any) -> Any:
    """A JSON-ready form of ``value`` (see the module doc); TypeError for anything else."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray)):
        return {"$bytes": base64.b64encode(value).decode()}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, tuple):
        return {"$tuple": [encode(v) for v in value]}
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in value):
            return {k: encode(v) for k, v in value.items()}
        return {"$map": [[encode(k), encode(v)] for k, v in value.items()]}
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return {"$ip": str(value)}
    if isinstance(value, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        return {"$ipnet": str(value)}
    if isinstance(value, PurePath):
        return {"$path": str(value)}
    model = _encode_model(value)
    if model is not None:
        return model
    if type(value).__module__.startswith("nwguard."):
        import dataclasses  # 5 ms to import (inspect): not in a client's start-up

        if isinstance(value, Record):
            names: Any = value._fields
        elif dataclasses.is_dataclass(value):
            names = [f.name for f in dataclasses.fields(value) if f.init]
        else:
            names = None
        if names is not None:
            fields = {n: encode(getattr(value, n)) for n in names}
            return {"$dc": f"{type(value).__module__}:{type(value).__qualname__}", "f": fields}
    raise TypeError(f"cannot send a {type(value).__name__} over the nwguardd protocol")


def _encode_model(value: Any) -> dict[str, str] | None:
    from nwguard.model.binding import FilterBinding
    from nwguard.model.filter import Filter

    if isinstance(value, Filter):
        from nwguard.xmlio.filter_xml import write_filter

        return {"$filter": write_filter(value)}
    if isinstance(value, FilterBinding):
        from nwguard.xmlio.binding_xml import write_binding

        return {"$binding": write_binding(value)}
    try:
        from nwguard.model.network import Network
    except ImportError:  # pragma: no cover - networks not built
        return None
    if isinstance(value, Network):
        from nwguard.xmlio.network_xml import write_network

        return {"$network": write_network(value)}
    return None


def decode(value: Any, *, objects: bool = True) -> Any:
    """The Python value of an :func:`encode` form. ``objects=False`` (the daemon reading a
    request) refuses model objects and dataclasses: arguments are plain data."""
    if isinstance(value, list):
        return [decode(v, objects=objects) for v in value]
    if not isinstance(value, dict):
        return value
    tags = [k for k in value if k.startswith("$")]
    if not tags:
        return {k: decode(v, objects=objects) for k, v in value.items()}
    tag = tags[0]
    body = value[tag]
    try:
        return _decode_tagged(tag, body, value, objects)
    except NwguardError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the value broke, it is a bad request
        raise ProtocolError(f"bad {tag} value: {exc}") from None


def _decode_tagged(tag: str, body: Any, value: dict[str, Any], objects: bool) -> Any:
    if tag == "$bytes":
        return base64.b64decode(body, validate=True)
    if tag == "$tuple":
        return tuple(decode(v, objects=objects) for v in body)
    if tag == "$map":
        return {decode(k, objects=objects): decode(v, objects=objects) for k, v in body}
    if tag == "$ip":
        return ipaddress.ip_address(body)
    if tag == "$ipnet":
        return ipaddress.ip_network(body)
    if tag == "$path":
        from pathlib import Path

        return Path(body)
    if not objects:
        raise ProtocolError(f"{tag} values are not accepted in requests")
    if tag == "$filter":
        from nwguard.xmlio.filter_xml import parse_filter

        return parse_filter(body)
    if tag == "$binding":
        from nwguard.xmlio.binding_xml import parse_binding

        return parse_binding(body)
    if tag == "$network":
        from nwguard.xmlio.network_xml import parse_network

        return parse_network(body)
    if tag == "$dc":
        return _decode_dataclass(body, value.get("f") or {})
    raise ProtocolError(f"unknown value tag {tag!r}")


def _is_dataclass(cls: type) -> bool:
    import dataclasses  # only for a class that is not a record

    return dataclasses.is_dataclass(cls)


def _decode_dataclass(name: str, fields: dict[str, Any]) -> Any:
    module, _, qualname = name.partition(":")
    if not module.startswith("nwguard.") or not qualname.isidentifier():
        raise ProtocolError(f"refusing to build {name!r}")
    cls = getattr(importlib.import_module(module), qualname)
    if not (isinstance(cls, type) and (issubclass(cls, Record) or _is_dataclass(cls))):
        raise ProtocolError(f"{name!r} is not a dataclass")
    return cls(**{k: decode(v) for k, v in fields.items()})


# ----------------------------------------------------------------------------- framing


class LineTooLong(ProtocolError):
    """A line over the size limit: answered with an error, then the connection closes."""


class LineReader:
    """Reads newline-terminated lines of at most ``limit`` bytes from a socket.

    :meth:`readline` returns a line without its newline, ``None`` at end of stream, and raises
    :class:`LineTooLong` when ``limit`` bytes came without a newline.
    """

    def __init__(self, sock: Any, limit: int = MAX_LINE) -> None:
        self.sock, self.limit = sock, limit
        self.buf = bytearray()

    def readline(self) -> bytes | None:
        start = 0
        while True:
            nl = self.buf.find(b"\n", start)
            if nl >= 0:
                if nl > self.limit:
                    raise LineTooLong(f"request line longer than {self.limit} bytes")
                line = bytes(self.buf[:nl])
                del self.buf[: nl + 1]
                return line
            if len(self.buf) > self.limit:
                raise LineTooLong(f"request line longer than {self.limit} bytes")
            start = len(self.buf)
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                return None
            self.buf += chunk


# ----------------------------------------------------------------------------- messages


def dump(message: dict[str, Any]) -> bytes:
    """One message as a line of JSON."""
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def request(
    req_id: int | str, method: str, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
) -> bytes:
    return dump({"id": req_id, "method": method,
                 "params": {"args": encode(list(args)), "kwargs": encode(kwargs or {})}})  # fmt: skip


def parse_request(line: bytes) -> tuple[Any, str, list[Any], dict[str, Any]]:
    """``(id, method, args, kwargs)`` of one request line; ProtocolError if malformed.

    The id is returned even when something else is wrong (as ``ProtocolError.req_id``).
    """
    try:
        msg = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"request is not JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise ProtocolError("request is not a JSON object")
    req_id = msg.get("id")
    try:
        if not isinstance(req_id, (int, str, type(None))) or isinstance(req_id, bool):
            raise ProtocolError("request id must be a number or a string")
        method = check_method(msg.get("method"))
        params = msg.get("params")
        params = {} if params is None else params
        if not isinstance(params, dict):
            raise ProtocolError("params must be an object {args, kwargs}")
        args, kwargs = (
            decode(params.get("args", []), objects=False),
            decode(params.get("kwargs", {}), objects=False),
        )
        if (
            not isinstance(args, list)
            or not isinstance(kwargs, dict)
            or not all(isinstance(k, str) for k in kwargs)
        ):
            raise ProtocolError("params.args must be a list and params.kwargs an object")
    except ProtocolError as exc:
        exc.req_id = req_id  # type: ignore[attr-defined]
        raise
    return req_id, method, args, kwargs


def response(req_id: Any, result: Any) -> bytes:
    return dump({"id": req_id, "result": encode(result)})


def error_response(req_id: Any, exc: NwguardError) -> bytes:
    return dump({"id": req_id, "error": {"code": exc.code, "message": str(exc)}})


def parse_response(line: bytes, *, decoded: bool = True) -> tuple[Any, Any]:
    """``(id, result)`` of a response; raises the error class its code names.

    ``decoded=False``: the result as sent (tagged values left as they are)."""
    try:
        msg = json.loads(line)
    except ValueError as exc:
        raise ProtocolError(f"nwguardd sent a response that is not JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise ProtocolError("nwguardd sent a response that is not an object")
    err = msg.get("error")
    if err is not None:
        raise error_from_wire(err)
    result = msg.get("result")
    return msg.get("id"), decode(result) if decoded else result


def error_from_wire(err: Any) -> NwguardError:
    if not isinstance(err, dict):
        return ProtocolError(f"nwguardd sent a malformed error: {str(err)[:200]}")
    cls = ERRORS.get(str(err.get("code")), NwguardError)
    return cls(str(err.get("message") or "unknown error"))


__all__ = [
    "KINDS",
    "MAX_LINE",
    "LineReader",
    "LineTooLong",
    "ProtocolError",
    "check_method",
    "decode",
    "dump",
    "encode",
    "error_from_wire",
    "error_response",
    "is_query",
    "parse_request",
    "parse_response",
    "request",
    "response",
]
