"""nwguardd's wire protocol and socket server, without root and without a kernel.

The server half runs in this process (the daemon's listeners and request handler on a real
Client in a temporary directory); clients are the proxy, raw sockets, and the ``nwguard``
command as a process.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from nwguard.api import Client
from nwguard.builtin import builtin_filters
from nwguard.daemon import protocol as P
from nwguard.daemon.proxy import DaemonProxy, connect, maybe_proxy, xml_outline
from nwguard.daemon.server import Daemon, Listener, Options
from nwguard.errors import (
    ALL_ERRORS,
    ConflictError,
    NotFoundError,
    NwguardError,
    PermissionDeniedError,
    XMLError,
)
from nwguard.xmlio.binding_xml import parse_binding

BINDING = (
    "<filterbinding><owner><name>vm</name><uuid>d2b2f9b6-94ff-4aa7-b4b0-8f0e5b8e2a53</uuid>"
    "</owner><portdev name='vnet0'/><mac address='52:54:00:7b:35:93'/>"
    "<filterref filter='clean-traffic'><parameter name='IP' value='10.0.0.1'/>"
    "<parameter name='IP' value='10.0.0.2'/></filterref></filterbinding>"
)
SPAM = (
    "<filter name='no-spamming' chain='root'><uuid>d217f2d7-5a04-0e01-8b98-ec2743436b74</uuid>"
    "<rule action='drop' direction='out' priority='500'><tcp dstportstart='25'/></rule></filter>"
)


# ----------------------------------------------------------------------------- values


@pytest.mark.parametrize(
    "value",
    [
        None, True, 0, -7, 2.5, "x", "", [], [1, [2, "3"]], (), (1, (2, 3)), b"\x00\xff",
        {"a": 1}, {"$not-a-tag": 1}, {1: "one", (2, 3): None}, ipaddress.ip_address("10.0.0.1"),
        ipaddress.ip_address("fe80::1"), ipaddress.ip_network("10.0.0.0/8"), Path("/run/x"),
    ],
)  # fmt: skip
def test_values_round_trip(value):
    wire = json.loads(json.dumps(P.encode(value)))
    assert P.decode(wire) == value
    assert type(P.decode(wire)) is type(value)


def test_model_objects_travel_as_their_xml():
    f = builtin_filters()["clean-traffic"]
    b = parse_binding(BINDING)
    for obj in (f, b, [f, b]):
        wire = json.loads(json.dumps(P.encode(obj)))
        assert P.decode(wire) == obj
    assert "$filter" in P.encode(f) and "$binding" in P.encode(b)


def test_network_objects_and_records():
    from nwguard.engine.networks import NetworkRecord
    from nwguard.host.dnsmasq import LeaseRecord
    from nwguard.xmlio.network_xml import parse_network

    net = parse_network(
        "<network><name>n</name><uuid>0b7e3c1a-0d4f-4c55-9a5e-1d2c3b4a5f60</uuid>"
        "<bridge name='br9'/><ip address='10.9.0.1' prefix='24'/></network>"
    )
    rec = NetworkRecord("n", "active", True, True, "u", "br9")
    lease = LeaseRecord(1700000000, "52:54:00:00:00:01", "ipv4", "10.9.0.5", 24, None, None)
    for obj in (net, rec, [lease]):
        assert P.decode(json.loads(json.dumps(P.encode(obj)))) == obj


def test_requests_carry_plain_data_only():
    f = builtin_filters()["allow-arp"]
    line = P.dump({"id": 1, "method": "nwfilter_define", "params": {"args": [P.encode(f)]}})
    with pytest.raises(P.ProtocolError, match=r"\$filter values are not accepted"):
        P.parse_request(line)


@pytest.mark.parametrize("name", ["os:system", "nwguard.errors:NwguardError", "nwguard.x:1a"])
def test_dataclasses_only_from_nwguard(name):
    with pytest.raises(P.ProtocolError):
        P.decode({"$dc": name, "f": {}})


def test_unencodable_values_are_refused():
    with pytest.raises(TypeError, match="cannot send a object"):
        P.encode(object())


# ----------------------------------------------------------------------------- messages


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"garbage", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"id": 1}', "unknown method"),
        (b'{"id": 1, "method": "ctx"}', "unknown method"),
        (b'{"id": 1, "method": "_engine"}', "unknown method"),
        (b'{"id": 1, "method": "nwfilter__x; rm"}', "unknown method"),
        (b'{"id": 1, "method": "nwfilter_list", "params": []}', "params must be an object"),
        (b'{"id": 1, "method": "nwfilter_list", "params": {"args": {}}}', "args must be a list"),
        (b'{"id": [1], "method": "nwfilter_list"}', "id must be"),
        (b'{"id": 1, "method": "nwfilter_list", "params": {"args": [{"$bytes": "!!"}]}}', "bad"),
    ],
)
def test_malformed_requests(line, message):
    with pytest.raises(P.ProtocolError, match=message):
        P.parse_request(line)


def test_request_round_trip_keeps_the_id():
    req_id, method, args, kwargs = P.parse_request(
        P.request("a-1", "net_list", (), {"all": True}).strip()
    )
    assert (req_id, method, args, kwargs) == ("a-1", "net_list", [], {"all": True})
    with pytest.raises(P.ProtocolError) as info:
        P.parse_request(b'{"id": 7, "method": "no_such"}')
    assert info.value.req_id == 7


@pytest.mark.parametrize("code", [*sorted(ALL_ERRORS), "protocol"])
def test_error_codes_come_back_as_their_class(code):
    cls = P.ERRORS[code]
    line = P.error_response(3, cls("it went wrong"))
    with pytest.raises(cls) as info:
        P.parse_response(line.strip())
    assert type(info.value) is cls and str(info.value) == "it went wrong"


def test_unknown_error_code_is_a_plain_nwguard_error():
    with pytest.raises(NwguardError, match="new kind"):
        P.parse_response(b'{"id": 1, "error": {"code": "from-the-future", "message": "new kind"}}')


def test_queries():
    for m in ("nwfilter_list", "nwfilter_dumpxml", "nwfilter_get", "nwfilter_binding_list",
              "nwfilter_binding_dumpxml", "net_list", "net_info", "net_dumpxml",
              "net_dhcp_leases", "iface_list", "daemon.info"):  # fmt: skip
        assert P.is_query(m), m
    for m in (
        "nwfilter_define",
        "nwfilter_binding_create",
        "net_start",
        "daemon.reapply",
        "x_list",
    ):
        assert not P.is_query(m), m


def test_line_reader():
    a, b = socket.socketpair()
    with a, b:
        reader = P.LineReader(b, limit=10)
        a.sendall(b"one\ntwo\n\nthree")
        assert reader.readline() == b"one"
        assert reader.readline() == b"two"
        assert reader.readline() == b""
        a.sendall(b"\n" + b"x" * 20 + b"\n")
        assert reader.readline() == b"three"
        with pytest.raises(P.LineTooLong):
            reader.readline()
        a.close()
        reader.buf.clear()
        assert reader.readline() is None


# ----------------------------------------------------------------------------- the server


class Served:
    def __init__(self, tmp: Path) -> None:
        self.client = Client.open(str(tmp / "etc"), str(tmp / "run"))
        self.paths = self.client.ctx.paths
        self.daemon = Daemon(self.client, Options(learning=False))
        self.listeners = [Listener(self.daemon, self.paths.socket, readonly=False),
                          Listener(self.daemon, self.paths.socket_ro, readonly=True)]  # fmt: skip
        for lst in self.listeners:
            lst.start()

    def proxy(self, readonly: bool = False) -> DaemonProxy:
        path = self.paths.socket_ro if readonly else self.paths.socket
        got = connect(path)
        assert got is not None
        return DaemonProxy(self.client.ctx, got[0], got[1], path)

    def raw(self, readonly: bool = False) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(str(self.paths.socket_ro if readonly else self.paths.socket))
        return s

    def close(self) -> None:
        self.daemon.stopping.set()
        for lst in self.listeners:
            lst.stop()


@pytest.fixture
def served():
    # not under pytest's tmp_path: its 0700 parents would keep the "nobody" client out anyway
    top = Path(tempfile.mkdtemp(prefix="nwguard-daemon-test-"))
    top.chmod(0o755)
    s = Served(top)
    yield s
    s.close()
    shutil.rmtree(top, ignore_errors=True)


def _ask(sock: socket.socket, payload: bytes) -> dict:
    sock.sendall(payload)
    reader = P.LineReader(sock, limit=1 << 24)
    line = reader.readline()
    assert line is not None, "the daemon closed the connection"
    return json.loads(line)


needs_root_socket = pytest.mark.skipif(os.geteuid() != 0, reason="the control socket is root-only")


def test_socket_modes(served):
    assert served.paths.socket.stat().st_mode & 0o777 == 0o600
    assert served.paths.socket_ro.stat().st_mode & 0o777 == 0o666


@needs_root_socket
def test_proxy_returns_what_the_client_returns(served):
    proxy = served.proxy()
    embedded = served.client
    assert proxy.nwfilter_list() == embedded.nwfilter_list()
    assert proxy.nwfilter_dumpxml("clean-traffic") == embedded.nwfilter_dumpxml("clean-traffic")
    f = proxy.nwfilter_define(SPAM)
    assert f.filter == embedded.nwfilter_get("no-spamming") and f.applied
    assert proxy.nwfilter_binding_list() == []
    info = proxy.call("daemon.info")
    assert info["pid"] == os.getpid() and info["config_dir"] == str(served.paths.config_dir)


@needs_root_socket
def test_proxy_raises_the_clients_errors(served):
    proxy = served.proxy()
    with pytest.raises(NotFoundError) as remote:
        proxy.nwfilter_get("no-such-filter")
    with pytest.raises(NotFoundError) as local:
        served.client.nwfilter_get("no-such-filter")
    assert str(remote.value) == str(local.value)
    with pytest.raises(XMLError, match="expected <filter>"):
        proxy.nwfilter_define("<nofilter/>")
    with pytest.raises(NotFoundError, match="does not exist"):
        proxy.nwfilter_binding_create(BINDING.replace("vnet0", "nwgt-nothere0"))
    with pytest.raises(P.ProtocolError, match="bad arguments for nwfilter_get"):
        proxy.nwfilter_get()
    with pytest.raises(AttributeError):
        proxy._engine  # noqa: B018 - private names are never forwarded
    assert proxy.nwfilter_get("allow-arp").name == "allow-arp"  # the connection still works


def test_read_only_socket_answers_queries_and_refuses_changes(served):
    proxy = served.proxy(readonly=True)
    assert [f.name for f in proxy.nwfilter_list()] == sorted(builtin_filters())
    with pytest.raises(PermissionDeniedError, match="read-only socket"):
        proxy.nwfilter_define(SPAM)
    with pytest.raises(PermissionDeniedError):
        proxy.nwfilter_undefine("allow-arp")
    with pytest.raises(PermissionDeniedError):
        proxy.call("daemon.reapply")
    assert "allow-arp" in [f.name for f in served.client.nwfilter_list()]


def test_garbage_gets_an_error_and_the_connection_goes_on(served):
    with served.raw(readonly=True) as s:
        reply = _ask(s, b"this is not json\n")
        assert reply["error"]["code"] == "protocol" and reply["id"] is None
        reply = _ask(s, b'{"id": 5, "method": "rm -rf"}\n')
        assert reply == {
            "id": 5,
            "error": {"code": "protocol", "message": "unknown method 'rm -rf'"},
        }
        reply = _ask(s, P.request(6, "nwfilter_get", ("allow-arp",)))
        assert reply["id"] == 6 and "$filter" in reply["result"]


def test_oversized_request_is_refused_and_the_daemon_keeps_serving(served):
    with served.raw(readonly=True) as s:
        big = b'{"id": 1, "method": "nwfilter_get", "params": {"args": ["' + b"a" * (
            P.MAX_LINE + 10
        )
        try:
            s.sendall(big + b'"]}}\n')
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon may close before all of it is sent
        line = P.LineReader(s).readline()
        assert line is not None and json.loads(line)["error"]["code"] == "protocol"
        assert b"longer than" in line
        assert P.LineReader(s).readline() is None  # then it hangs up
    assert served.proxy(readonly=True).nwfilter_get("allow-arp").name == "allow-arp"


def test_a_client_that_leaves_mid_request_does_no_harm(served):
    ctx = served.client.ctx
    with ctx.lock():  # the request waits for the lock, its client is gone when it runs
        s = served.raw(readonly=True)
        s.sendall(P.request(1, "nwfilter_list"))
        time.sleep(0.2)
        s.close()
    time.sleep(0.2)
    for _ in range(3):
        assert len(served.proxy(readonly=True).nwfilter_list()) == len(builtin_filters())


def test_many_clients_at_once_are_served(served):
    errors: list[BaseException] = []

    def work() -> None:
        try:
            p = served.proxy(readonly=True)
            for _ in range(5):
                assert len(p.nwfilter_list()) == len(builtin_filters())
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not [t for t in threads if t.is_alive()], "clients still waiting after 30 s"
    assert not errors


def _as_nobody(path: str) -> dict:
    """Connect to ``path`` as uid 65534 (a forked child) and return what happened."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        out: dict = {}
        try:
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(5)
            try:
                s.connect(path)
            except PermissionError:
                out = {"connect": "EACCES"}
            else:
                line = P.LineReader(s).readline()
                out = {"reply": json.loads(line) if line else None}
        except BaseException as exc:  # noqa: BLE001
            out = {"exception": repr(exc)}
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(data)


def test_control_socket_refuses_a_non_root_client(served):
    if os.geteuid() == 0:
        assert _as_nobody(str(served.paths.socket)) == {"connect": "EACCES"}  # mode 0600
    os.chmod(served.paths.socket, 0o666)  # and even when the file lets it in: SO_PEERCRED
    got = _as_nobody(str(served.paths.socket)) if os.geteuid() == 0 else None
    if got is None:  # not root ourselves: we are the non-root client
        with served.raw() as s:
            got = {"reply": json.loads(P.LineReader(s).readline())}
    assert got["reply"]["error"]["code"] == "permission"
    assert "root only" in got["reply"]["error"]["message"]


# ----------------------------------------------------------------------------- the command


def _cli(served: Served, *argv: str, daemon: bool) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NWGUARD_NO_DAEMON": "0" if daemon else "1"}
    cmd = [sys.executable, "-c", "from nwguard.cli.main import main; main()", "--config-dir", str(served.paths.config_dir),
           "--state-dir", str(served.paths.state_dir), *argv]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60, check=False)


@needs_root_socket
def test_cli_behaves_the_same_through_the_daemon(served, tmp_path):
    spam = tmp_path / "spam.xml"
    spam.write_text(SPAM)
    unknown = tmp_path / "unknown.xml"  # a binding to a filter nobody defined: refused
    unknown.write_text("<filterbinding><portdev name='nwgt-none0'/><mac address='52:54:00:00:00:01'/>"
                       "<filterref filter='no-such-filter'/></filterbinding>")  # fmt: skip
    seen = []
    for argv in (["nwfilter-list"], ["nwfilter-dumpxml", "clean-traffic"], ["nwfilter-define", str(spam)],
                 ["nwfilter-binding-list"], ["nwfilter-dumpxml", "nope"],
                 ["nwfilter-binding-dumpxml", "nope"], ["nwfilter-binding-delete", "nope"],
                 ["nwfilter-binding-create", str(unknown)]):  # fmt: skip
        via = _cli(served, *argv, daemon=True)
        alone = _cli(served, *argv, daemon=False)
        assert (via.returncode, via.stdout, via.stderr) == (
            alone.returncode,
            alone.stdout,
            alone.stderr,
        )
        seen.append(via.returncode)
    assert seen[:4] == [0, 0, 0, 0] and 0 not in seen[4:]


@needs_root_socket
def test_raw_results_carry_what_the_cli_reads(served):
    proxy = served.proxy()
    raw = proxy.call_raw("nwfilter_list")
    outlines = [xml_outline(item["$filter"]) for item in raw]
    got = [(children["uuid"][1], attrs["name"]) for attrs, children in outlines]
    assert got == [(f.uuid, f.name) for f in proxy.nwfilter_list()] and len(got) > 20


def test_xml_outline_reads_the_first_child_of_each_name():
    attrs, children = xml_outline(
        "<filterbinding a='1&amp;2'><portdev name='v&apos;x'/><uuid> u </uuid>"
        "<portdev name='second'/><owner><name>deep</name></owner></filterbinding>"
    )
    assert attrs == {"a": "1&2"}
    assert children == {"portdev": ({"name": "v'x"}, ""), "uuid": ({}, " u "), "owner": ({}, "")}


def test_maybe_proxy(served, tmp_path, monkeypatch):
    monkeypatch.setenv("NWGUARD_NO_DAEMON", "1")
    assert maybe_proxy(served.client) is None
    monkeypatch.delenv("NWGUARD_NO_DAEMON")
    dry = Client.open(str(served.paths.config_dir), str(served.paths.state_dir), dry_run=True)
    assert maybe_proxy(dry) is None
    other = Client.open(str(tmp_path / "other-etc"), str(served.paths.state_dir))
    with pytest.raises(ConflictError, match="configuration directory"):
        maybe_proxy(other)
    lonely = Client.open(str(tmp_path / "x-etc"), str(tmp_path / "x-run"))
    assert maybe_proxy(lonely) is None
    proxy = maybe_proxy(served.client)
    assert proxy is not None and proxy.nwfilter_get("allow-arp").name == "allow-arp"


def test_daemon_status_command(served):
    up = _cli(served, "daemon-status", daemon=True)
    assert up.returncode == 0, up.stderr
    assert f"pid:          {os.getpid()}" in up.stdout
    down = _cli(served, "daemon-status", daemon=False)
    assert down.returncode == 1 and "not running" in down.stdout
