"""The ``nwguard`` CNI plugin (spec 0.4.0 and 1.0.0), chained after ``bridge``.

Network configuration (one entry of a conflist's ``plugins``)::

    {"type": "nwguard", "filter": "clean-traffic", "params": {"CTRL_IP_LEARNING": "none"},
     "configDir": "/etc/nwguard", "stateDir": "/run/nwguard"}

``configDir`` and ``stateDir`` are optional (nwguard's defaults). The commands:

- ADD binds ``filter`` to the host-side veth found in ``prevResult`` with ``$MAC`` and
  ``$IP`` (``$IPV6``) of the container interface (``name == CNI_IFNAME``, ``sandbox ==
  CNI_NETNS``) and prints ``prevResult`` unchanged; no ``prevResult``: error 7;
- DEL removes the binding of ``CNI_CONTAINERID``/``CNI_IFNAME``; it needs neither
  ``prevResult`` nor the veth and succeeds when there is nothing to remove;
- CHECK verifies the binding against ``prevResult`` and its dispatch in the kernel;
- VERSION answers whatever stdin holds.

When nwguardd serves the state directory, ADD and DEL ask it over its socket (the plugin then
loads none of the engine); otherwise they bind in this process. A DEL with nothing to undo
(no binding file names the owner) loads nothing at all.

Errors are CNI error objects on stdout with exit status 1. :func:`run` is the whole protocol
(environment and stdin in, stdout and status out) with its effects injected; :func:`main`
wires it to the process.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple

from nwguard.cni import attachment as A
from nwguard.cni import fast
from nwguard.cni.attachment import Attachment, KernelView

if TYPE_CHECKING:
    from nwguard.api import Client

SUPPORTED = ("0.4.0", "1.0.0")
LATEST = SUPPORTED[-1]

# CNI's well-known error codes (SPEC.md, "Error"); 100 and up are the plugin's own.
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENV = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
NWGUARD_ERROR = 100  # details: nwguard's error code (not-found, resolve, apply-failed, ...)
CHECK_FAILED = 101


class CniError(Exception):
    """An error the plugin reports in CNI's format."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code, self.msg, self.details = code, msg, details


class Request(NamedTuple):
    """One invocation: CNI's environment variables and the network configuration."""

    command: str
    container_id: str
    netns: str
    ifname: str
    config: dict[str, Any]

    @property
    def version(self) -> str:
        return str(self.config.get("cniVersion", LATEST))


class Effects(NamedTuple):
    """What the plugin needs of the world: a client for a config, the host, the kernel, and
    nwguardd (``daemon``: a connection for the configuration and state directories, or None
    to bind in-process through ``connect``)."""

    connect: Callable[[str | None, str | None], Client]
    is_bridge_port: Callable[[str], bool]
    kernel: Callable[[], KernelView]
    applied_dispatch: Callable[[Client, str], dict[str, str]] = lambda client, port: (
        _applied_dispatch(client, port)
    )
    daemon: Callable[[str, str], fast.Nwguardd | None] = lambda config_dir, state_dir: None


def run(env: Mapping[str, str], stdin: bytes, effects: Effects | None = None) -> tuple[str, int]:
    """The plugin: ``(stdout, exit status)`` for one invocation."""
    version = LATEST
    try:
        command = env.get("CNI_COMMAND", "")
        if command == "VERSION":
            return version_answer(), 0
        req = parse_request(env, stdin)
        version = req.version
        return _dispatch(req, effects or default_effects()), 0
    except CniError as exc:
        err: dict[str, Any] = {"cniVersion": version, "code": exc.code, "msg": exc.msg}
        if exc.details:
            err["details"] = exc.details
        return _dump(err), 1


def version_answer() -> str:
    """What VERSION prints (``cni-install`` writes it into the executable, too)."""
    return _dump({"cniVersion": LATEST, "supportedVersions": list(SUPPORTED)})


def parse_request(env: Mapping[str, str], stdin: bytes) -> Request:
    """Check the environment and the configuration (CNI error on anything wrong)."""
    command = env.get("CNI_COMMAND", "")
    if command not in ("ADD", "DEL", "CHECK"):
        raise CniError(INVALID_ENV, f"CNI_COMMAND '{command}' is not ADD, DEL, CHECK or VERSION")
    try:
        config = json.loads(stdin)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CniError(DECODE_FAILURE, f"the network configuration is not JSON: {exc}") from None
    if not isinstance(config, dict):
        raise CniError(DECODE_FAILURE, "the network configuration is not a JSON object")
    version = config.get("cniVersion")
    if version not in SUPPORTED:
        raise CniError(
            INCOMPATIBLE_VERSION,
            f"cniVersion {version!r} is not supported; supported: {', '.join(SUPPORTED)}",
        )
    needed = ("CNI_CONTAINERID", "CNI_IFNAME") + (("CNI_NETNS",) if command != "DEL" else ())
    missing = [v for v in needed if not env.get(v)]
    if missing:
        raise CniError(INVALID_ENV, f"{command} needs {', '.join(missing)} in the environment")
    _config_fields(config)
    return Request(
        command, env["CNI_CONTAINERID"], env.get("CNI_NETNS", ""), env["CNI_IFNAME"], config
    )


def _config_fields(config: dict[str, Any]) -> None:
    if not isinstance(config.get("filter"), str) or not config["filter"]:
        raise CniError(INVALID_CONFIG, 'the configuration needs "filter": a filter\'s name')
    params = config.get("params", {})
    ok = isinstance(params, dict) and all(
        isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))
        for v in params.values()
    )
    if not ok:
        raise CniError(INVALID_CONFIG, '"params" must map names to a string or a list of strings')
    for key in ("configDir", "stateDir"):
        if key in config and not isinstance(config[key], str):
            raise CniError(INVALID_CONFIG, f'"{key}" must be a path')


def _dispatch(req: Request, fx: Effects) -> str:
    from nwguard.errors import NwguardError

    try:
        if req.command == "DEL":
            _, state_dir = fast.dirs(req.config.get("configDir"), req.config.get("stateDir"))
            if not fast.maybe_bound(state_dir, A.owner_name(req.container_id, req.ifname)):
                return ""  # nothing to undo: nothing loaded, nobody asked
            with _store(req, fx) as store:
                A.detach(store, req.container_id, req.ifname)
            return ""
        prev = req.config.get("prevResult")
        if not isinstance(prev, dict):
            raise CniError(INVALID_CONFIG, f"{req.command} needs a prevResult (chain nwguard "
                           "after a plugin that creates the interface, such as bridge)")  # fmt: skip
        att = attachment_from(req, prev, fx.is_bridge_port)
        filter_name, params = req.config["filter"], req.config.get("params", {})
        if req.command == "ADD":
            with _store(req, fx) as store:
                A.attach(store, att, filter_name, params)
            return _dump(prev)
        client = fx.connect(req.config.get("configDir"), req.config.get("stateDir"))
        binding = A.binding_for(att, filter_name, params)
        try:
            A.check(client, binding, fx.kernel(), fx.applied_dispatch(client, att.port))
        except A.AttachmentError as exc:
            raise CniError(CHECK_FAILED, str(exc)) from None
        return ""
    except NwguardError as exc:
        raise CniError(NWGUARD_ERROR, str(exc), exc.code) from None
    except OSError as exc:
        raise CniError(IO_FAILURE, str(exc)) from None


@contextmanager
def _store(req: Request, fx: Effects) -> Iterator[A.BindingStore]:
    """nwguardd when it runs (the plugin then loads no engine), else nwguard in-process."""
    config_dir, state_dir = req.config.get("configDir"), req.config.get("stateDir")
    link = fx.daemon(*fast.dirs(config_dir, state_dir))
    if link is None:
        yield A.ClientStore(fx.connect(config_dir, state_dir))
        return
    try:
        yield link
    finally:
        link.close()


def attachment_from(
    req: Request, prev: dict[str, Any], is_bridge_port: Callable[[str], bool]
) -> Attachment:
    """The container interface and its host-side port in a previous result.

    The container's is the interface named ``CNI_IFNAME`` in ``CNI_NETNS``; the port is the
    host-side interface (no sandbox) that is a bridge port: ``bridge`` also lists the bridge
    itself. The addresses are those of ``ips`` on the container interface (all of them when
    an entry names no interface).
    """
    ifaces = prev.get("interfaces")
    if not isinstance(ifaces, list) or not all(isinstance(i, dict) for i in ifaces):
        raise CniError(INVALID_CONFIG, "prevResult has no interfaces list")
    mine = [
        n for n, i in enumerate(ifaces)
        if i.get("name") == req.ifname and i.get("sandbox") == req.netns
    ]  # fmt: skip
    if len(mine) != 1:
        raise CniError(
            INVALID_CONFIG, f"prevResult has no interface {req.ifname} in sandbox {req.netns}"
        )
    index, container = mine[0], ifaces[mine[0]]
    mac = container.get("mac")
    if not isinstance(mac, str) or not mac:
        raise CniError(INVALID_CONFIG, f"prevResult gives no MAC address for {req.ifname}")
    host = [str(i.get("name")) for i in ifaces if not i.get("sandbox") and i.get("name")]
    ports = host if len(host) == 1 else [h for h in host if is_bridge_port(h)]
    if len(ports) != 1:
        raise CniError(
            INVALID_CONFIG,
            f"prevResult has no single host-side port for {req.ifname} (host interfaces: "
            f"{', '.join(host) or 'none'}); chain nwguard after bridge",
        )
    v4: list[str] = []
    v6: list[str] = []
    for ip in prev.get("ips") or []:
        if not isinstance(ip, dict) or not isinstance(ip.get("address"), str):
            raise CniError(INVALID_CONFIG, "prevResult has an ips entry without an address")
        if ip.get("interface", index) != index:
            continue
        addr = ip["address"].partition("/")[0]
        (v6 if ":" in addr else v4).append(addr)
    return Attachment(req.container_id, req.ifname, ports[0], mac.lower(), tuple(v4), tuple(v6))


def _dump(doc: Any) -> str:
    return json.dumps(doc, indent=2) + "\n"


# ----------------------------------------------------------------------------- the edges


def _connect(config_dir: str | None, state_dir: str | None) -> Client:
    if sys.flags.no_site and "site" not in sys.modules:
        # the installed plugin starts without site (-S: faster for VERSION and the daemon
        # path); the engine needs site-packages (lxml, nftables)
        import site

        site.main()
    from nwguard.cli.connect import connect

    return connect(config_dir, state_dir)


class NftKernelView:
    """Reads the dispatch maps of ``bridge nwguard`` (``nft -j``)."""

    def dispatch(self) -> dict[str, dict[str, str]]:
        from nwguard.backends.nft import layout
        from nwguard.backends.nft.executor import run_json
        from nwguard.errors import ApplyError

        try:
            doc = run_json(f"list table {layout.BRIDGE} {layout.TABLE}")
        except ApplyError:
            return {}  # no table: no port is dispatched
        out: dict[str, dict[str, str]] = {}
        for obj in doc.get("nftables", []):
            m = obj.get("map")
            if not m or m.get("name") not in layout.DISPATCH:
                continue
            entries = out.setdefault(m["name"], {})
            for key, verdict in m.get("elem", []):
                target = verdict.get("goto", verdict.get("jump", {})).get("target")
                entries[str(key)] = str(target)
        return out


def _applied_dispatch(client: Client, port: str) -> dict[str, str]:
    """The port's dispatch in nwguard's applied state, as the state directory keeps it."""
    from nwguard.engine.ports import load_state
    from nwguard.state.paths import Paths

    paths = client.ctx.paths if client.ctx is not None else Paths.from_env(None, None)
    state = load_state(paths.state_dir / "applied")
    contrib = state.ports.get(port) if state is not None else None
    return dict(contrib.dispatch) if contrib is not None else {}


def default_effects() -> Effects:
    return Effects(_connect, fast.is_bridge_port, NftKernelView, daemon=fast.connect)


def main() -> None:
    """The executable CNI runs: environment and stdin in, stdout and exit status out."""
    out, status = run(os.environ, sys.stdin.buffer.read())
    sys.stdout.write(out)
    sys.stdout.flush()
    sys.exit(status)
