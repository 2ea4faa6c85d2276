"""Virtual networks in a real kernel: DHCP, DNS and each forward mode's reachability.

nwguard runs inside the lab's host namespace (``ip netns exec HOST nwguard …``); guests are
namespaces whose veth is plugged into the network's bridge and configure themselves with a
real DHCP exchange (scapy frames) against the network's real dnsmasq; an "outside" namespace
is routed to the host. Every namespace, process and file is removed, also on failure.
"""

from __future__ import annotations

import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from .lab import Bridge, Lab, Node

pytestmark = pytest.mark.kernel  # tests/conftest.py skips or, under CI, fails without root

NWGUARD = str(Path(sys.executable).with_name("nwguard"))
SUBNET = "192.0.2"  # the network's subnet: a documentation range, only inside the lab
HOST_IP, OUTSIDE_IP = "198.51.100.1", "198.51.100.2"
DOMAIN = "nwg.test"


def network_xml(
    name: str, bridge: str, mode: str | None, *, stp: str = "off", subnet: str = SUBNET
) -> str:
    forward = f"<forward mode='{mode}'/>" if mode else ""
    return f"""<network>
  <name>{name}</name>
  {forward}
  <bridge name='{bridge}' stp='{stp}' delay='0'/>
  <domain name='{DOMAIN}' localOnly='yes'/>
  <dns><host ip='{subnet}.250'><hostname>files</hostname></host></dns>
  <ip address='{subnet}.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='{subnet}.100' end='{subnet}.199'/>
      <host mac='52:54:00:aa:00:07' name='fixed' ip='{subnet}.7'/>
    </dhcp>
  </ip>
</network>
"""


class Nwg:
    """Runs the ``nwguard`` CLI inside the lab's host namespace on private dirs."""

    def __init__(self, lab: Lab, root: Path) -> None:
        self.lab, self.root = lab, root
        self.cfg, self.state = root / "etc", root / "run"

    def __call__(self, *args: str, check: bool = True) -> Any:
        argv = (NWGUARD, "--config-dir", str(self.cfg), "--state-dir", str(self.state), *args)
        out = self.lab.run(self.lab.host_ns, *argv, check=False)
        if check and out.returncode != 0:
            raise AssertionError(f"nwguard {' '.join(args)} failed: {out.stderr.strip()}")
        return out

    def define(self, name: str, xml: str) -> None:
        path = self.root / f"{name}.xml"
        path.write_text(xml)
        self("net-define", str(path))

    def leftovers(self, bridge: str) -> list[str]:
        """Everything a started network could leave behind that is still there."""
        found = []
        links = self.lab.run(self.lab.host_ns, "ip", "-o", "link", "show").stdout
        if f": {bridge}:" in links or f": {bridge}@" in links:
            found.append(f"bridge {bridge}")
        tables = self.lab.run(self.lab.host_ns, "nft", "list", "tables").stdout
        found += [f"table {t}" for t in tables.split("\n") if "nwguard_net_" in t]
        found += [f"rule {r}" for r in libvirt_chain_rules(self.lab)]
        found += [f"process {pid}" for pid in dnsmasq_pids(self.state)]
        sdir = self.state / "network"
        found += [f"file {p}" for p in sdir.rglob("*")] if sdir.exists() else []
        return found


def libvirt_chain_rules(lab: Lab) -> list[str]:
    """The rules in libvirt's network chains (``LIBVIRT_*``) of iptables and ip6tables."""
    out = []
    for tool in ("iptables-nft-save", "ip6tables-nft-save"):
        for table in ("filter", "nat"):
            text = lab.run(lab.host_ns, tool, "-t", table).stdout
            out += [ln for ln in text.splitlines() if ln.startswith("-A LIBVIRT_")]
    return out


def dnsmasq_pids(state: Path) -> list[int]:
    """Live (non-zombie) processes whose command line mentions ``state``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
            status = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(state).encode() in cmd and status != "Z":
            pids.append(int(entry.name))
    return pids


@pytest.fixture
def nwg(lab: Lab, firewall_backend: str) -> Iterator[Nwg]:
    """An nwguard instance for the lab; destroys what it started even when a test fails."""
    root = Path(tempfile.mkdtemp(prefix="nwg-net-"))  # mode 0700: dnsmasq must cope
    inst = Nwg(lab, root)
    try:
        yield inst
    finally:
        for status in (
            (inst.state / "network").glob("*.json") if (inst.state / "network").exists() else ()
        ):
            inst("net-destroy", status.stem, check=False)
        for pid in dnsmasq_pids(inst.state):  # last resort: never leave a dnsmasq running
            os.kill(pid, 9)
        for p in sorted(root.rglob("*"), reverse=True):
            p.unlink() if not p.is_dir() or p.is_symlink() else p.rmdir()
        root.rmdir()


# ----------------------------------------------------------------------------- guest side


def plug_guest(lab: Lab, name: str, bridge: str, mac: str | None = None) -> Node:
    """A guest namespace without an address whose veth is a port of nwguard's ``bridge``."""
    if bridge not in lab.bridges:
        lab.bridges[bridge] = Bridge(name=bridge, ns=lab.host_ns, mac="00:00:00:00:00:00")
    return lab.guest(name, ip=None, bridge=bridge, mac=mac)


def _dhcp_reply(frames: list[bytes], xid: int, kind: int) -> Any:
    for raw in frames:
        pkt = Ether(raw)
        if BOOTP in pkt and pkt[BOOTP].xid == xid:
            opts = {o[0]: o[1:] for o in pkt[DHCP].options if isinstance(o, tuple)}
            if opts.get("message-type", (None,))[0] == kind:
                return pkt, opts
    return None, None


def _dhcp_frame(g: Node, xid: int, options: list[Any]) -> bytes:
    chaddr = bytes.fromhex(g.mac.replace(":", ""))
    frame = (
        Ether(src=g.mac, dst="ff:ff:ff:ff:ff:ff")
        / IP(src="0.0.0.0", dst="255.255.255.255")
        / UDP(sport=68, dport=67)
        / BOOTP(chaddr=chaddr, xid=xid, flags=0x8000)
        / DHCP(options=[*options, "end"])
    )
    return bytes(frame)


def _dhcp_exchange(lab: Lab, g: Node, xid: int, options: list[Any], kind: int) -> Any:
    with lab.sniffer(g, filter="udp and dst port 68") as sn:
        lab.send(g, _dhcp_frame(g, xid, options))
        frame = sn.wait_for(lambda raw: _dhcp_reply([raw], xid, kind)[0] is not None, 4.0)
        return _dhcp_reply([frame] if frame else [], xid, kind)


def dhcp(lab: Lab, g: Node, hostname: str, deadline: float = 15.0) -> dict[str, Any]:
    """DISCOVER/OFFER/REQUEST/ACK for guest ``g``; configures its address and default route."""
    xid = int.from_bytes(os.urandom(4), "big")
    end = time.monotonic() + deadline
    offer = None
    while offer is None and time.monotonic() < end:  # STP may hold the port for a while
        offer, oopts = _dhcp_exchange(
            lab, g, xid, [("message-type", "discover"), ("hostname", hostname)], 2
        )
    assert offer is not None, f"no DHCPOFFER for {g.name}"
    ip, server = offer[BOOTP].yiaddr, oopts["server_id"][0]
    req = [
        ("message-type", "request"),
        ("requested_addr", ip),
        ("server_id", server),
        ("hostname", hostname),
    ]
    ack, aopts = _dhcp_exchange(lab, g, xid, req, 5)
    assert ack is not None, f"no DHCPACK for {g.name}"
    mask = aopts["subnet_mask"][0]
    prefix = sum(int(o).bit_count() for o in mask.split("."))
    lab.run(g, "ip", "addr", "add", f"{ip}/{prefix}", "dev", g.iface)
    router = aopts.get("router", (None,))[0]
    if router:
        lab.run(g, "ip", "route", "add", "default", "via", router)
    return {
        "ip": ip,
        "prefix": prefix,
        "router": router,
        "dns": aopts.get("name_server", (None,))[0],
    }


def resolve(lab: Lab, where: Node, server: str, name: str) -> str | None:
    """Ask ``server`` for the A record of ``name`` from inside ``where``."""
    sock = lab.open_socket(where, socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(2.0)
    sock.sendto(bytes(DNS(id=7, rd=1, qd=DNSQR(qname=name))), (server, 53))
    try:
        reply = DNS(sock.recv(4096))
    except TimeoutError:
        return None
    finally:
        sock.close()
    for i in range(reply.ancount):
        if reply.an[i].type == 1:
            return str(reply.an[i].rdata)
    return None


def peer_seen(lab: Lab, client: Node, server: Node, dst: str, port: int = 8080) -> str | None:
    """Open a TCP connection from ``client`` to ``dst``; the source ``server`` saw, or None."""
    fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
    lsock = lab.open_socket(server, fam, socket.SOCK_STREAM)
    csock = lab.open_socket(client, fam, socket.SOCK_STREAM)
    try:
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", port))
        lsock.listen(1)
        lsock.settimeout(2.0)
        csock.settimeout(2.0)
        try:
            csock.connect((dst, port))
            conn, peer = lsock.accept()
        except OSError:
            return None
        conn.close()
        return peer[0]
    finally:
        lsock.close()
        csock.close()


# ----------------------------------------------------------------------------- the tests

EXPECT = {  # mode: (guest -> outside source seen, or None if blocked; outside -> guest works)
    "isolated": (None, False),
    "nat": (HOST_IP, False),
    "route": ("guest", True),
    "open": ("guest", True),
}
TIMES: dict[str, list[float]] = {"start": [], "destroy": []}


@pytest.mark.parametrize("mode", list(EXPECT))
def test_mode_gives_lease_name_and_exactly_its_reachability(lab: Lab, nwg: Nwg, mode: str) -> None:
    bridge = lab.devname("nbr")
    lab.host(forwarding=True)  # so that only nwguard's rules can block forwarding
    outside = lab.outside("out", ip=OUTSIDE_IP, host_ip=HOST_IP, gateway=HOST_IP)
    nwg.define(
        "n",
        network_xml(
            "n", bridge, None if mode == "isolated" else mode, stp="on" if mode == "nat" else "off"
        ),
    )
    t0 = time.monotonic()
    nwg("net-start", "n")
    TIMES["start"].append(time.monotonic() - t0)
    a, b = plug_guest(lab, "ga", bridge), plug_guest(lab, "gb", bridge)
    fixed = plug_guest(lab, "gf", bridge, mac="52:54:00:aa:00:07")
    la, lb, lf = dhcp(lab, a, "ga"), dhcp(lab, b, "gb"), dhcp(lab, fixed, "gf")
    assert la["router"] == la["dns"] == f"{SUBNET}.1"
    assert lf["ip"] == f"{SUBNET}.7"
    assert int(la["ip"].rsplit(".", 1)[1]) in range(100, 200)
    # names: another guest's (from its DHCP hostname), a static DHCP host's and a <dns><host>
    assert resolve(lab, a, la["dns"], f"gb.{DOMAIN}") == lb["ip"]
    assert resolve(lab, a, la["dns"], f"fixed.{DOMAIN}") == f"{SUBNET}.7"
    assert resolve(lab, b, lb["dns"], f"files.{DOMAIN}") == f"{SUBNET}.250"
    # guest <-> guest always
    assert peer_seen(lab, a, b, lb["ip"]) == la["ip"]
    # guest -> outside, and what the outside sees
    seen, inbound = EXPECT[mode]
    got = peer_seen(lab, a, outside, OUTSIDE_IP)
    assert got == (la["ip"] if seen == "guest" else seen), f"{mode}: outside saw {got}"
    # outside -> guest, new connections
    assert (peer_seen(lab, outside, a, la["ip"]) == OUTSIDE_IP) is inbound
    leases = nwg("net-dhcp-leases", "n", "--json").stdout
    assert la["ip"] in leases and "ga" in leases and lb["ip"] in leases
    t0 = time.monotonic()
    nwg("net-destroy", "n")
    TIMES["destroy"].append(time.monotonic() - t0)
    assert nwg.leftovers(bridge) == []
    nwg("net-undefine", "n")
    assert not list(nwg.cfg.rglob("*.xml"))


NET6, OUT6, HOST6 = "2001:db8:77", "2001:db8:99::2", "2001:db8:99::1"


@pytest.mark.parametrize(("mode", "allowed"), [(None, False), ("nat", True), ("route", True)])
def test_ipv6_is_routed_not_masqueraded(
    lab: Lab, nwg: Nwg, mode: str | None, allowed: bool
) -> None:
    """IPv6 in nat mode is routed (real source, inbound allowed); isolated blocks it."""
    bridge = lab.devname("nbr")
    lab.host(forwarding=True)
    outside = lab.outside("out", ip=OUTSIDE_IP, host_ip=HOST_IP, ip6=OUT6, host_ip6=HOST6)
    lab.route(outside, "default", HOST6)
    xml = network_xml("n6", bridge, mode).replace(
        "</network>", f"<ip family='ipv6' address='{NET6}::1' prefix='64'/></network>"
    )
    nwg.define("n6", xml)
    nwg("net-start", "n6")
    g = plug_guest(lab, "g6", bridge)
    lab.run(g, "ip", "-6", "addr", "add", f"{NET6}::10/64", "dev", g.iface, "nodad")
    lab.run(g, "ip", "-6", "route", "add", "default", "via", f"{NET6}::1")
    time.sleep(0.2)
    out_seen = peer_seen(lab, g, outside, OUT6)
    in_seen = peer_seen(lab, outside, g, f"{NET6}::10")
    assert out_seen == (f"{NET6}::10" if allowed else None)
    assert in_seen == (OUT6 if allowed else None)
    nwg("net-destroy", "n6")
    assert nwg.leftovers(bridge) == []


def test_start_failure_halfway_rolls_back_and_says_why(lab: Lab, nwg: Nwg) -> None:
    bridge = lab.devname("nbr")
    lab.host()
    nwg.define("n", network_xml("n", bridge, "nat"))
    squatter = lab.open_socket(lab.host_ns, socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind(("0.0.0.0", 67))
    out = nwg("net-start", "n", check=False)
    assert out.returncode == 1
    assert "start dnsmasq failed" in out.stderr and "Address already in use" in out.stderr, (
        out.stderr
    )
    assert "rolled back" in out.stderr
    assert nwg.leftovers(bridge) == []
    assert lab.read_sysctl(lab.host_ns, "net.ipv4.ip_forward") == "0"
    assert "inactive" in nwg("net-list", "--all").stdout
    squatter.close()
    nwg("net-start", "n")
    nwg("net-destroy", "n")
    assert nwg.leftovers(bridge) == []


def test_overlapping_subnet_and_bridge_in_use_are_refused(lab: Lab, nwg: Nwg) -> None:
    lab.host()
    nwg.define("a", network_xml("a", lab.devname("nbr"), "nat"))
    path = nwg.root / "b.xml"
    path.write_text(
        network_xml("b", lab.devname("nbr"), "route").replace("255.255.255.0", "255.255.0.0")
    )
    out = nwg("net-define", str(path), check=False)
    assert out.returncode == 1 and "overlaps subnet 192.0.2.0/24 of network 'a'" in out.stderr
    taken = lab.bridge()
    path.write_text(network_xml("c", taken.name, "route", subnet="203.0.113"))
    out = nwg("net-define", str(path), check=False)
    assert out.returncode == 1
    assert f"bridge name '{taken.name}' is already in use by an existing device" in out.stderr


def test_start_refused_when_subnet_is_routed_elsewhere(lab: Lab, nwg: Nwg) -> None:
    lab.host()
    lab.outside("out", ip=f"{SUBNET}.2", host_ip=f"{SUBNET}.254")
    bridge = lab.devname("nbr")
    nwg.define("n", network_xml("n", bridge, "nat"))
    out = nwg("net-start", "n", check=False)
    assert out.returncode == 1 and "already in use by interface" in out.stderr
    assert nwg.leftovers(bridge) == []


def test_every_golden_batch_is_accepted_by_the_kernel(lab: Lab) -> None:
    """The reviewed golden batches (tests/golden/network) are valid nftables, twice in a row."""
    import json

    from nwguard.backends.nft import executor as nft_exec
    from nwguard.backends.nft.render import NftBatch, to_nft
    from nwguard.compile import network as netfw

    goldens = sorted((Path(__file__).resolve().parent.parent / "golden" / "network").glob("*.json"))
    assert len(goldens) >= 8

    def apply_all() -> list[str]:
        done = []
        for path in goldens:
            batch = NftBatch(tuple(json.loads(path.read_text())["nftables"]))
            nft_exec.apply(batch)
            nft_exec.apply(batch)  # a leftover table is replaced in the same transaction
            nft_exec.apply(to_nft(netfw.teardown_batch("nwguard_net_virbr0")))
            done.append(path.stem)
        return done

    assert lab.call_in(lab.host(), apply_all) == [p.stem for p in goldens]
    assert "nwguard_net" not in lab.run(lab.host_ns, "nft", "list", "tables").stdout


def test_every_golden_network_is_added_and_removed_exactly_by_iptables(lab: Lab) -> None:
    """Every mode's rules (tests/unit/test_netfw.py's cases) are accepted by the kernel,
    and a stop leaves libvirt's chains as empty as they were."""
    import importlib.util

    from nwguard.backends.ebiptables.executor import Runner
    from nwguard.backends.ebiptables.network import NetworkFirewall
    from nwguard.compile import network as netfw
    from nwguard.ir.nodes import Batch, Command, Rule
    from nwguard.xmlio.network_xml import parse_network

    path = Path(__file__).resolve().parent.parent / "unit" / "test_netfw.py"
    spec = importlib.util.spec_from_file_location("nwguard_netfw_cases", path)
    assert spec is not None and spec.loader is not None
    cases = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cases)
    lab.host()
    fw = NetworkFirewall(runner=Runner("nft", ["ip", "netns", "exec", lab.host_ns]))
    seen = 0
    for name, xml in sorted(cases.CASES.items()):
        start = netfw.network_batch(parse_network(xml))
        stop = Batch([Command("delete", c.obj) for c in start.commands if isinstance(c.obj, Rule)])
        fw.apply(start)
        during = libvirt_chain_rules(lab)
        assert bool(during) == bool(start), name  # (open: nothing at all)
        seen += bool(during)
        fw.apply(stop)
        assert libvirt_chain_rules(lab) == [], name
    assert seen >= 8


def test_report_times() -> None:
    """Not a check: prints the measured net-start / net-destroy times (run with -s)."""
    for what, values in TIMES.items():
        if values:
            print(
                f"net-{what}: median {statistics.median(values) * 1000:.0f} ms over {len(values)} runs"
            )
