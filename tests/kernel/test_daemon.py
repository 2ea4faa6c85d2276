"""nwguardd in a real kernel: flush recovery, SIGHUP, restart reconcile, SIGKILL, sockets.

The daemon runs as its own process in the lab's host namespace (``ip netns exec HOST
nwguardd …``); the test talks to it through its socket, as the CLI does.
"""

from __future__ import annotations

import contextlib
import json
import random
import signal
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from nwguard.errors import PermissionDeniedError

from .lab import Lab, Node
from .nwg import binding_xml
from .nwgd import Daemon, nft_json, vmap_ports, wait_until

pytestmark = pytest.mark.kernel  # tests/conftest.py skips or, under CI, fails without root


@pytest.fixture
def daemon(lab: Lab) -> Iterator[Daemon]:
    d = Daemon(lab)
    try:
        yield d
    finally:
        d.close()


def udp(src: Node, dst: Node, src_ip: str | None = None, sport: int = 4000) -> bytes:
    return bytes(
        Ether(src=src.mac, dst=dst.mac)
        / IP(src=src_ip or src.ip, dst=dst.ip)
        / UDP(sport=sport, dport=9)
        / b"nwguard-daemon-test"
    )


def spoof_dropped(lab: Lab, a: Node, b: Node) -> bool:
    """a's spoofed source address is dropped and its own passes (clean-traffic in force)."""
    return not lab.probe(a, udp(a, b, src_ip="192.0.2.99"), b, timeout=0.3) and lab.probe(
        a, udp(a, b), b, timeout=1.0
    )


ADMIN_TABLE = """table inet admin {
    chain input {
        type filter hook input priority 10; policy accept;
        udp dport 5555 counter drop
    }
}
"""


def two_guests(lab: Lab, daemon: Daemon) -> tuple[Node, Node]:
    a, b = lab.guest("a"), lab.guest("b")
    daemon.start()
    daemon.client.nwfilter_binding_create(binding_xml(a.port, a.mac, "clean-traffic", IP=a.ip))
    assert spoof_dropped(lab, a, b)
    return a, b


# ----------------------------------------------------------------------------- flush recovery


def test_flush_ruleset_is_repaired_within_a_second_and_other_tables_are_left_alone(lab, daemon):
    a, b = two_guests(lab, daemon)
    lab.run(lab.host_ns, "nft", "flush", "ruleset")
    t0 = time.monotonic()
    # an admin's table made right after the flush: the recovery must not touch it
    lab.run(lab.host_ns, "nft", "-f", "-", input=ADMIN_TABLE)
    assert wait_until(lambda: a.port in vmap_ports(lab), timeout=1.0) is not None, daemon.log()
    restored = time.monotonic() - t0
    assert restored < 1.0
    assert spoof_dropped(lab, a, b)
    admin = nft_json(lab, "list", "table", "inet", "admin")["nftables"]
    rules = [x["rule"] for x in admin if "rule" in x]
    assert len(rules) == 1 and rules[0]["chain"] == "input"
    log = daemon.wait_log("restored nwguard's rules")
    line = next(x for x in log.splitlines() if "restored nwguard's rules" in x and "by nft" in x)
    assert "deleted" in line and "table bridge nwguard" in line
    # clean-traffic is Ethernet-layer only: nwguard had no IP-layer table to lose
    assert "table inet nwguard" not in line
    assert "by nft (pid" in log


def _port_chain(lab: Lab, port: str, role: str = "l2o") -> str:
    for item in nft_json(lab, "list", "map", "bridge", "nwguard", role)["nftables"]:
        if "map" in item:
            for key, verdict in item["map"]["elem"]:
                if key == port:
                    return verdict["goto"]["target"]
    raise AssertionError(f"{port} not in {role}")


def test_one_deleted_chain_is_repaired(lab, daemon):
    a, b = two_guests(lab, daemon)
    chain = _port_chain(lab, a.port)
    lab.run(lab.host_ns, "nft", "-f", "-", input=(
        f'delete element bridge nwguard l2o {{ "{a.port}" }}\n'
        f"flush chain bridge nwguard {chain}\n"
        f"delete chain bridge nwguard {chain}\n"))  # fmt: skip
    t0 = time.monotonic()
    assert wait_until(lambda: _port_chain(lab, a.port) == chain, timeout=1.0) is not None
    assert time.monotonic() - t0 < 1.0
    assert spoof_dropped(lab, a, b)
    log = daemon.wait_log(f"deleted chain bridge nwguard {chain}")
    assert "1 element" in log


def test_deleting_a_base_chain_and_a_foreign_rule_in_our_table_are_repaired(lab, daemon):
    a, b = two_guests(lab, daemon)
    lab.run(lab.host_ns, "nft", "-f", "-", input=(
        "flush chain bridge nwguard pre_l2\ndelete chain bridge nwguard pre_l2\n"))  # fmt: skip
    assert wait_until(lambda: spoof_dropped(lab, a, b), timeout=2.0) is not None
    daemon.wait_log("deleted chain bridge nwguard pre_l2")
    n = _pre_l2_rules()  # its counting rule and the dispatch
    lab.run(lab.host_ns, "nft", "add", "rule", "bridge", "nwguard", "pre_l2", "accept")
    ok = wait_until(
        lambda: f"chain bridge nwguard pre_l2 has {n + 1} rules, not {n}" in daemon.log()
    )
    assert ok is not None, daemon.log()
    rules = [x for x in nft_json(lab, "list", "chain", "bridge", "nwguard", "pre_l2")["nftables"]
             if "rule" in x]  # fmt: skip
    assert len(rules) == n


def _pre_l2_rules() -> int:
    """The rules of ``pre_l2`` in the fixed layout (what a reset to no port creates)."""
    from nwguard.backends.nft.render import to_nft
    from nwguard.compile.kernel_state import KernelState, full

    adds = (c["add"] for c in to_nft(full(KernelState())).commands if "add" in c)
    return sum(1 for a in adds if "rule" in a and a["rule"]["chain"] == "pre_l2")


def test_own_changes_are_not_mistaken_for_foreign_ones(lab, daemon):
    two_guests(lab, daemon)
    restores = daemon.log().count("restored")  # whatever the start did
    c = lab.guest("c")
    daemon.client.nwfilter_binding_create(binding_xml(c.port, c.mac, "clean-traffic", IP=c.ip))
    daemon.client.nwfilter_binding_delete(c.port)
    time.sleep(0.5)
    assert daemon.log().count("restored") == restores
    assert "foreign change" not in daemon.log()


def test_sighup_reapplies_everything(lab, daemon):
    a, b = two_guests(lab, daemon)

    def handle() -> tuple[int, ...]:
        # A re-apply recreates every chain (the bridge table itself may stay: it holds sets
        # that can only be created in nft syntax), so the chains' handles all change.
        objs = nft_json(lab, "list", "table", "bridge", "nwguard")["nftables"]
        return tuple(sorted(o["chain"]["handle"] for o in objs if "chain" in o))

    before = handle()
    daemon.signal(signal.SIGHUP)
    assert wait_until(lambda: not set(handle()) & set(before), timeout=2.0) is not None
    daemon.wait_log("re-applied nwguard's rules")
    assert "SIGHUP" in daemon.log()
    assert spoof_dropped(lab, a, b)
    assert daemon.proc.poll() is None


# ----------------------------------------------------------------------------- restart


def test_sigterm_leaves_the_rules_and_restart_reconciles(lab, daemon):
    a, b = two_guests(lab, daemon)
    c = lab.guest("c")
    daemon.client.nwfilter_binding_create(binding_xml(c.port, c.mac, "clean-traffic", IP=c.ip))
    assert daemon.stop() == 0
    assert not daemon.socket.exists()
    assert spoof_dropped(lab, a, b)  # no daemon: the rules stay
    lab.run(lab.host_ns, "ip", "link", "del", c.port)  # c's guest goes away meanwhile
    lab.run(lab.host_ns, "nft", "flush", "ruleset")  # and a firewall restart wipes everything
    daemon.start()
    assert spoof_dropped(lab, a, b)
    assert vmap_ports(lab) == {a.port}
    assert [x.portdev for x in daemon.client.nwfilter_binding_list()] == [a.port]
    assert f"port {c.port} is gone" in daemon.log()


def test_a_vanished_port_is_unbound(lab, daemon):
    a, b = two_guests(lab, daemon)
    c = lab.guest("c")
    daemon.client.nwfilter_binding_create(binding_xml(c.port, c.mac, "clean-traffic", IP=c.ip))
    lab.run(lab.host_ns, "ip", "link", "del", c.port)
    gone = wait_until(
        lambda: not any(x.portdev == c.port for x in daemon.client.nwfilter_binding_list()), 5.0
    )
    assert gone is not None, daemon.log()
    assert vmap_ports(lab) == {a.port}
    assert spoof_dropped(lab, a, b)


def _veth_ports(lab: Lab, n: int) -> list[tuple[str, str]]:
    """``n`` extra ports (veth pairs, both ends bound) in the host namespace: (port, mac)."""
    lines, ports = [], []
    for i in range(0, n, 2):
        x, y = f"kx{lab.tag}{i}", f"ky{lab.tag}{i}"
        lines.append(f"link add {x} type veth peer name {y}")
        lines += [f"link set {x} up", f"link set {y} up"]
        ports += [(x, f"52:54:01:{i >> 8 & 255:02x}:{i & 255:02x}:01"),
                  (y, f"52:54:01:{i >> 8 & 255:02x}:{i & 255:02x}:02")]  # fmt: skip
    lab.run(lab.host_ns, "ip", "-batch", "-", input="\n".join(lines) + "\n")
    return ports[:n]


KILL_FILTER = """<filter name='kill-test' chain='root'>
  <uuid>9a1f7e2c-3b4d-4e5f-8a6b-7c8d9e0f1a2b</uuid>
  <filterref filter='clean-traffic'/>
  <rule action='drop' direction='out' priority='600'><udp dstportstart='{port}'/></rule>
</filter>"""


def test_sigkill_during_a_rebuild_never_leaves_a_port_unfiltered(lab, daemon):
    a, b = lab.guest("a"), lab.guest("b")
    daemon.start()
    cl = daemon.client
    cl.nwfilter_define(KILL_FILTER.format(port=7001))
    extra = _veth_ports(lab, 150)
    ports = {a.port} | {p for p, _ in extra}
    cl.nwfilter_binding_create(binding_xml(a.port, a.mac, "kill-test", IP=a.ip))
    for i, (p, mac) in enumerate(extra):
        cl.nwfilter_binding_create(
            binding_xml(p, mac, "kill-test", IP=f"10.1.{i // 250}.{i % 250 + 1}")
        )
    assert vmap_ports(lab) == ports
    rng = random.Random(5)
    for round_ in range(4):
        new_port = 7002 + round_

        def rebuild(cl=cl, new_port=new_port) -> None:
            with contextlib.suppress(Exception):  # the daemon dies under it
                cl.nwfilter_define(KILL_FILTER.format(port=new_port))  # every port is rebuilt

        t = threading.Thread(target=rebuild)
        t.start()
        time.sleep(rng.uniform(0.0, 0.15))
        daemon.kill()
        t.join(10)
        assert not t.is_alive(), "the define did not return after the daemon died"
        # whatever the moment, the kernel holds one complete generation: every port filtered
        assert vmap_ports(lab) == ports
        assert spoof_dropped(lab, a, b)
        daemon.start()
        cl = daemon.client
        assert vmap_ports(lab) == ports
        assert spoof_dropped(lab, a, b)
        stored = cl.nwfilter_dumpxml("kill-test")
        blocked = 7001 + round_ if f"'{7001 + round_}'" in stored else new_port
        assert f"'{blocked}'" in stored
        # the kernel blocks the port the stored filter names (restart recompiled all)
        frame = bytes(
            Ether(src=a.mac, dst=b.mac) / IP(src=a.ip, dst=b.ip) / UDP(sport=1, dport=blocked)
        )
        assert not lab.probe(a, frame, b, timeout=0.3)
        cl.nwfilter_define(
            KILL_FILTER.format(port=7002 + round_)
        )  # a known state for the next round


# ----------------------------------------------------------------------------- sockets


def test_non_root_clients_get_the_read_only_socket(lab, daemon):
    daemon.start()
    nobody = "65534"
    out = daemon.cli("nwfilter-list", user=nobody)
    assert out.returncode == 0 and "clean-traffic" in out.stdout, out.stderr
    assert daemon.cli("nwfilter-list").stdout == out.stdout
    status = daemon.cli("daemon-status", user=nobody)
    assert status.returncode == 0 and f"pid:          {daemon.pid}" in status.stdout
    assert "nwguardd-ro.sock" in status.stdout
    spam = daemon.top / "spam.xml"
    spam.write_text("<filter name='spam'><rule action='drop' direction='out'><tcp dstportstart='25'/>"
                    "</rule></filter>")  # fmt: skip
    spam.chmod(0o644)
    refused = daemon.cli("nwfilter-define", str(spam), user=nobody)
    assert refused.returncode != 0 and "read-only socket" in refused.stderr
    assert "spam" not in daemon.cli("nwfilter-list").stdout
    # the control socket: its mode keeps nobody out, and SO_PEERCRED would too
    probe = (
        "import socket,sys\n"
        "s=socket.socket(socket.AF_UNIX)\n"
        "try:\n s.connect(sys.argv[1])\nexcept PermissionError:\n print('EACCES'); raise SystemExit\n"
        "print(s.recv(4096).decode())\n"
    )
    run = ["setpriv", f"--reuid={nobody}", f"--regid={nobody}", "--clear-groups", sys.executable, "-c", probe,
           str(daemon.socket)]  # fmt: skip
    assert lab.run(None, *run).stdout.strip() == "EACCES"
    daemon.socket.chmod(0o666)
    reply = json.loads(lab.run(None, *run).stdout)
    assert reply["error"]["code"] == "permission"
    assert "refused a client on the control socket" in daemon.log()


def test_read_only_socket_refuses_changes_through_the_proxy(lab, daemon):
    from nwguard.daemon.proxy import DaemonProxy, connect

    daemon.start()
    sock, info = connect(daemon.state / "nwguardd-ro.sock")
    ro = DaemonProxy(None, sock, info, daemon.state / "nwguardd-ro.sock")
    assert len(ro.nwfilter_list()) == len(daemon.client.nwfilter_list())
    with pytest.raises(PermissionDeniedError):
        ro.nwfilter_undefine("allow-arp")
    with pytest.raises(PermissionDeniedError):
        ro.call("daemon.reapply")
    assert ro.nwfilter_get("allow-arp").name == "allow-arp"


def test_malformed_and_oversized_requests_do_not_harm_the_daemon(lab, daemon):
    import socket as so

    a, b = two_guests(lab, daemon)
    for payload in (b"\x00\x01garbage\n", b'{"id": 1}\n', b"[]\n", b"{" * 100000 + b"\n"):
        with so.socket(so.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(str(daemon.socket))
            s.sendall(payload)
            reply = json.loads(s.makefile("rb").readline())
            assert reply["error"]["code"] == "protocol"
    with so.socket(so.AF_UNIX) as s:  # 5 MiB without a newline: error, then the daemon hangs up
        s.settimeout(10)
        s.connect(str(daemon.socket))
        try:
            s.sendall(b"x" * (5 << 20))
        except (BrokenPipeError, ConnectionResetError):
            pass
        reply = json.loads(s.makefile("rb").readline())
        assert "longer than" in reply["error"]["message"]
    with so.socket(so.AF_UNIX) as s:  # a client that leaves in the middle of a change
        s.connect(str(daemon.socket))
        c = lab.guest("c")
        from nwguard.daemon import protocol as P

        s.sendall(
            P.request(
                1,
                "nwfilter_binding_create",
                (binding_xml(c.port, c.mac, "clean-traffic", IP=c.ip),),
            )
        )
    assert wait_until(lambda: c.port in vmap_ports(lab), 5.0) is not None
    assert daemon.proc.poll() is None
    assert [x.portdev for x in daemon.client.nwfilter_binding_list()] == sorted([a.port, c.port])
    assert spoof_dropped(lab, a, b)


# ----------------------------------------------------------------------------- networks

NETWORK = """<network>
  <name>dnet</name>
  <bridge name='{bridge}' stp='off' delay='0'/>
  <ip address='203.0.113.1' netmask='255.255.255.0'>
    <dhcp><range start='203.0.113.100' end='203.0.113.150'/></dhcp>
  </ip>
</network>
"""


def test_autostart_networks_start_with_the_daemon_and_their_tables_are_restored(lab, daemon):
    bridge = f"nwgd-{lab.tag}"
    table = f"nwguard_net_{bridge}"
    xml = daemon.top / "dnet.xml"
    xml.write_text(NETWORK.format(bridge=bridge))
    lab.host()
    for argv in (("net-define", str(xml)), ("net-autostart", "dnet")):
        out = lab.run(
            lab.host_ns, "env", "NWGUARD_NO_DAEMON=1", *daemon.cli_argv(*argv), check=False
        )
        assert out.returncode == 0, out.stderr
    daemon.start()
    try:
        nets = {r.name: r.state for r in daemon.client.net_list(all=True)}
        assert nets == {"dnet": "active"}
        assert "network dnet started (autostart)" in daemon.log()
        tables = {
            t["table"]["name"] for t in nft_json(lab, "list", "tables")["nftables"] if "table" in t
        }
        assert table in tables
        lab.run(lab.host_ns, "nft", "delete", "table", "inet", table)
        back = wait_until(lambda: any(
            t.get("table", {}).get("name") == table for t in nft_json(lab, "list", "tables")["nftables"]
        ), timeout=1.0)  # fmt: skip
        assert back is not None, daemon.log()
        daemon.wait_log(f"network table {table}")
    finally:
        daemon.client.net_destroy("dnet")
