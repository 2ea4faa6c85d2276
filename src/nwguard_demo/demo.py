"""nwguard's demo: ``python -m nwguard_demo`` (as root; ``make demo`` runs it).

It builds a sandbox of network namespaces (never touching the machine's own network): a
"host" namespace with a bridge, and three guest namespaces whose ``eth0`` is a veth plugged
into that bridge. nwguard runs inside the host namespace as its command line
(``ip netns exec HOST nwguard ...``) with private, temporary configuration and
state directories. Then:

1. the sandbox is built;
2. the filter library (the 24 built-in filters of libvirt);
3. the three guest ports bound to ``clean-traffic`` with their IP addresses;
4. real traffic: ARP, ping and a TCP connection between guests pass; frames with a spoofed
   source MAC, a spoofed source IP, and ARP frames lying about IP or MAC are dropped;
5. libvirt's ``no-spamming`` example: define it, add it to ``clean-traffic`` (all bound ports
   are rebuilt in one transaction), and a guest's TCP to port 25 is dropped while port 80
   still connects;
6. a libvirt NAT network (:func:`network_demo`): an "outside" namespace routed to the host
   namespace; ``net-define`` and ``net-start`` (bridge, dnsmasq, forwarding, firewall); two
   more guests on its bridge get leases by a real DHCP exchange, resolve each other's names
   through dnsmasq, reach the outside masqueraded and cannot be reached from it; then
   ``net-destroy`` and ``net-undefine`` leave nothing behind;
7. when Debian's firewalld is installed (:mod:`nwguard_demo.firewalld`): a private one in the
   sandbox; ``net-start`` refused without the ``libvirt`` zone, ``nwguard firewalld-install``,
   the bridge in its zone with DHCP and DNS, and ``nwguardd`` putting it back after
   ``firewall-cmd --reload`` and a firewalld restart.
8. containers (:mod:`nwguard_demo.containers`, when podman is installed): podman containers
   behind the nwguard CNI plugin drop their spoofed IP and MAC, the control network passes
   them, and ``podman run --rm`` leaves nothing behind.

It ends with a table of what was tried, what was expected and what happened, and exits
non-zero if any expectation failed. The sandbox and the temporary directories are removed at
the end, also after a failure, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table

from nwguard_demo import firewalld as fwdemo
from nwguard_demo import net as dn
from nwguard_demo.sandbox import (
    Guest,
    Sandbox,
    SandboxError,
    orphans_reaped,
    signals_interrupt,
    sweep,
)

NO_SPAMMING = """\
<filter name='no-spamming' chain='root'>
  <uuid>d217f2d7-5a04-0e01-8b98-ec2743436b74</uuid>
  <rule action='drop' direction='out' priority='500'>
    <tcp dstportstart='25' dstportend='25'/>
  </rule>
</filter>
"""
GUESTS = (
    ("a", "192.0.2.11", "52:54:00:00:00:0a"),
    ("b", "192.0.2.12", "52:54:00:00:00:0b"),
    ("c", "192.0.2.13", "52:54:00:00:00:0c"),
)
CLI = "from nwguard.cli.main import main; main()"  # the `nwguard` command, whatever the venv
SPOOF_MAC = "52:54:00:66:66:66"
SPOOF_IP = "192.0.2.66"
PASS, DROP = "passes", "dropped"


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the final table."""

    what: str
    expected: str
    happened: str
    ok: bool


class Checks(list[Row]):
    """The rows so far; each one is also printed as soon as it is known."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console

    def __call__(self, row: Row) -> None:
        self.append(row)
        mark = "[green]✔[/]" if row.ok else "[bold red]✘[/]"
        self.console.print(f"{mark} {row.what} [dim]→ {row.happened}[/]", highlight=False)


class DemoError(RuntimeError):
    """A step of the demo could not be carried out (not a failed expectation)."""


class Nwguard:
    """The ``nwguard`` command, run inside the sandbox's host namespace, echoed as it runs."""

    def __init__(self, sb: Sandbox, tmp: Path, console: Console) -> None:
        self.sb, self.console = sb, console
        self.files = tmp / "files"
        self.files.mkdir(parents=True)
        self.options = ["--config-dir", str(tmp / "etc"), "--state-dir", str(tmp / "run")]
        self.env = {**os.environ, "NWGUARD_NO_DAEMON": "1"}

    def file(self, name: str, text: str) -> str:
        (self.files / name).write_text(text)
        return name

    def __call__(self, *args: str, echo: bool = True) -> str:
        self.console.print(f"[bold cyan]$ nwguard {' '.join(args)}[/]")
        argv = ["ip", "netns", "exec", self.sb.host_ns, sys.executable, "-c", CLI]
        out = run_in(argv + self.options + list(args), self.files, self.env)
        if out.returncode != 0:
            raise DemoError(f"nwguard {' '.join(args)} failed: {out.stderr.strip()}")
        if echo and out.stdout.strip():
            self.console.print(out.stdout.rstrip(), style="dim", highlight=False, markup=False)
        return str(out.stdout)

    def fails(self, *args: str) -> str:
        """Run a command that is expected to fail; return its stderr (echoed)."""
        self.console.print(f"[bold cyan]$ nwguard {' '.join(args)}[/]")
        argv = ["ip", "netns", "exec", self.sb.host_ns, sys.executable, "-c", CLI]
        out = run_in(argv + self.options + list(args), self.files, self.env)
        if out.returncode == 0:
            raise DemoError(f"nwguard {' '.join(args)} succeeded; it should have failed")
        self.console.print(out.stderr.rstrip(), style="dim", highlight=False, markup=False)
        return str(out.stderr)


def run_in(argv: list[str], cwd: Path, env: dict[str, str]) -> Any:
    import subprocess

    return subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
    )


# ----------------------------------------------------------------------------- frames


def _scapy() -> Any:
    """scapy's layers, imported on first use (it takes a second)."""
    from scapy.layers import inet, l2

    return l2.Ether, l2.ARP, inet.IP, inet.UDP


def udp_frame(
    src: Guest, dst: Guest, token: bytes, *, mac: str | None = None, ip: str | None = None
) -> bytes:
    Ether, _, IP, UDP = _scapy()
    pkt = Ether(src=mac or src.mac, dst=dst.mac) / IP(src=ip or src.ip, dst=dst.ip)
    return bytes(pkt / UDP(sport=40000, dport=9) / token)


def arp_frame(
    op: int, eth_src: str, eth_dst: str, hwsrc: str, psrc: str, hwdst: str, pdst: str
) -> bytes:
    Ether, ARP, _, _ = _scapy()
    return bytes(
        Ether(src=eth_src, dst=eth_dst) / ARP(op=op, hwsrc=hwsrc, psrc=psrc, hwdst=hwdst, pdst=pdst)
    )


def is_arp(data: bytes, op: int, hwsrc: str, psrc: str) -> bool:
    Ether, ARP, _, _ = _scapy()
    p = Ether(data)
    return ARP in p and p[ARP].op == op and p[ARP].hwsrc == hwsrc and p[ARP].psrc == psrc


def _token() -> bytes:
    return b"nwguard-demo-" + os.urandom(6).hex().encode()


# ----------------------------------------------------------------------------- the checks


def check_frame(
    sb: Sandbox, what: str, expected: str, src: Guest, frame: bytes, dst: Guest, match: Any
) -> Row:
    arrived = sb.probe(src, frame, dst, match)
    happened = f"arrived at {dst.name}" if arrived else f"nothing reached {dst.name} (0.8 s)"
    return Row(what, expected, happened, arrived == (expected == PASS))


def check_udp(sb: Sandbox, src: Guest, dst: Guest, label: str, expected: str, **spoof: str) -> Row:
    """A crafted UDP frame ``src`` → ``dst`` (``mac=``/``ip=`` replace the source's own)."""
    token = _token()
    frame = udp_frame(src, dst, token, **spoof)
    what = f"UDP {src.name} → {dst.name}, {label}"
    return check_frame(sb, what, expected, src, frame, dst, lambda d: token in d)


def check_arp_lie(sb: Sandbox, src: Guest, dst: Guest, label: str, hwsrc: str, psrc: str) -> Row:
    """An ARP reply from ``src`` to ``dst`` whose sender MAC/IP are not ``src``'s own."""
    frame = arp_frame(2, src.mac, dst.mac, hwsrc, psrc, dst.mac, dst.ip)
    what = f"ARP reply {src.name} → {dst.name}: {label}"
    return check_frame(sb, what, DROP, src, frame, dst, lambda d: is_arp(d, 2, hwsrc, psrc))


def check_arp(sb: Sandbox, a: Guest, b: Guest) -> Row:
    frame = arp_frame(1, a.mac, "ff:ff:ff:ff:ff:ff", a.mac, a.ip, "00:00:00:00:00:00", b.ip)
    reply = sb.exchange(a, frame, lambda d: is_arp(d, 2, b.mac, b.ip))
    happened = f"{b.name} answered: {b.ip} is-at {b.mac}" if reply else "no ARP reply"
    return Row(f"ARP: {a.name} asks who-has {b.ip} ({b.name})", PASS, happened, reply is not None)


def check_ping(sb: Sandbox, a: Guest, b: Guest) -> Row:
    ok = sb.ping(a, b.ip)
    happened = f"echo reply from {b.ip}" if ok else "no echo reply"
    return Row(f"ping {a.name} → {b.name} ({b.ip})", PASS, happened, ok)


def check_tcp(sb: Sandbox, a: Guest, b: Guest, port: int, expected: str, note: str = "") -> Row:
    got = sb.tcp_try(a, b, port)
    happened = {"connected": "connected, data echoed", "timed out": "no answer: connect timed out"}
    ok = got == "connected" if expected == PASS else got == "timed out"
    return Row(f"TCP {a.name} → {b.name}:{port}{note}", expected, happened.get(got, got), ok)


# ----------------------------------------------------------------------------- the parts


def filter_library(console: Console, nwg: Nwguard) -> None:
    console.rule("[bold]2. The filter library")
    out = nwg("nwfilter-list", echo=False)
    names = [line.split()[-1] for line in out.splitlines()[2:] if line.strip()]
    console.print(f"{len(names)} filters, libvirt's built-ins: " + ", ".join(names), style="dim")


def build_sandbox(console: Console, sb: Sandbox) -> list[Guest]:
    console.rule("[bold]1. A sandbox: a host namespace with bridge br0, three guests")
    sb.host("br0")
    guests = [sb.guest(name, ip, mac) for name, ip, mac in GUESTS]
    table = Table("guest namespace", "eth0 MAC", "eth0 IPv4", "host port (on br0)")
    for g in guests:
        table.add_row(g.ns, g.mac, g.ip, g.port)
    console.print(table)
    return guests


def binding_xml(g: Guest) -> str:
    return (
        "<filterbinding>\n"
        "  <owner>\n"
        f"    <name>guest-{g.name}</name>\n"
        f"    <uuid>{_uuid(g)}</uuid>\n"
        "  </owner>\n"
        f"  <portdev name='{g.port}'/>\n"
        f"  <mac address='{g.mac}'/>\n"
        "  <filterref filter='clean-traffic'>\n"
        f"    <parameter name='IP' value='{g.ip}'/>\n"
        "  </filterref>\n"
        "</filterbinding>\n"
    )


def _uuid(g: Guest) -> str:
    import uuid

    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"nwguard-demo-{g.name}"))


def bind_guests(console: Console, sb: Sandbox, nwg: Nwguard, guests: list[Guest]) -> None:
    console.rule("[bold]3. Bind every guest port to clean-traffic")
    console.print(Syntax(binding_xml(guests[0]), "xml", theme="ansi_dark"))
    for g in guests:
        nwg("nwfilter-binding-create", nwg.file(f"{g.port}.xml", binding_xml(g)))
    nwg("nwfilter-binding-list")
    console.print(kernel_summary(sb, len(guests)), style="dim")


def kernel_summary(sb: Sandbox, ports: int) -> str:
    out = sb.exec(sb.host_ns, ["nft", "-j", "list", "table", "bridge", "nwguard"])
    kinds: dict[str, int] = {}
    elements = 0
    for item in json.loads(out.stdout)["nftables"]:
        kind, obj = next(iter(item.items()))
        kinds[kind] = kinds.get(kind, 0) + 1
        elements += len(obj.get("elem", [])) if kind in ("set", "map") else 0
    chains, rules = kinds.get("chain", 0), kinds.get("rule", 0)
    return (
        f"kernel, table bridge nwguard: {chains} chains, {rules} rules and {elements} set/map "
        f"elements for the {ports} ports, the filter compiled once and shared, addresses in "
        f"sets (libvirt: 29 ebtables rules and 9 chains per port, {29 * ports} and "
        f"{9 * ports} here)"
    )


def traffic(sb: Sandbox, guests: list[Guest], check: Checks) -> None:
    check.console.rule("[bold]4. Real traffic between the guests")
    a, b, c = guests
    check(check_arp(sb, a, b))
    check(check_ping(sb, a, b))
    check(check_ping(sb, c, a))
    check(check_tcp(sb, a, b, 8080, PASS))
    check(check_udp(sb, a, b, "own MAC and IP", PASS))
    check(check_udp(sb, a, b, f"spoofed source MAC {SPOOF_MAC}", DROP, mac=SPOOF_MAC))
    check(check_udp(sb, a, b, f"spoofed source IP {SPOOF_IP}", DROP, ip=SPOOF_IP))
    check(check_arp_lie(sb, a, c, f"'{b.ip} is-at {a.mac}' (b's IP)", hwsrc=a.mac, psrc=b.ip))
    check(check_arp_lie(sb, a, c, f"forged sender MAC {SPOOF_MAC}", hwsrc=SPOOF_MAC, psrc=a.ip))


def no_spamming(sb: Sandbox, nwg: Nwguard, guests: list[Guest], check: Checks) -> None:
    console = check.console
    console.rule("[bold]5. libvirt's no-spamming example, added to clean-traffic")
    a, b, c = guests
    check(check_tcp(sb, a, b, 25, PASS, note=" (before no-spamming)"))
    console.print(Syntax(NO_SPAMMING, "xml", theme="ansi_dark"))
    nwg("nwfilter-define", nwg.file("no-spamming.xml", NO_SPAMMING))
    xml = nwg("nwfilter-dumpxml", "clean-traffic", echo=False)
    edited = xml.replace("</filter>", "  <filterref filter='no-spamming'/>\n</filter>", 1)
    console.print(
        "clean-traffic.xml: its XML as dumped, plus "
        "[bold]<filterref filter='no-spamming'/>[/] — every bound port is rebuilt "
        "in one transaction before the command returns"
    )
    started = time.monotonic()
    nwg("nwfilter-define", nwg.file("clean-traffic.xml", edited))
    console.print(f"({time.monotonic() - started:.2f} s, process start to exit)", style="dim")
    check(check_tcp(sb, a, b, 25, DROP))
    check(check_tcp(sb, c, a, 25, DROP))
    check(check_tcp(sb, a, b, 80, PASS))
    check(check_ping(sb, b, c))


NET_GUESTS = (("guesta", "52:54:00:00:01:0a"), ("guestb", "52:54:00:00:01:0b"))


def network_demo(console: Console, sb: Sandbox, nwg: Nwguard) -> list[Row]:
    """The virtual-network part (issue 4): a libvirt NAT network in the sandbox.

    An "outside" namespace routed to the host namespace, a ``<forward mode='nat'/>`` network
    defined and started with nwguard (bridge, dnsmasq, forwarding, firewall), two guests on
    its bridge that get their addresses by real DHCP, find each other by name through
    dnsmasq, reach the outside masqueraded and cannot be reached from it; then net-destroy
    and net-undefine, and a look for anything left. Rows are printed as they are known.
    """
    check = Checks(console)
    console.rule("[bold]6. A libvirt NAT network: DHCP and DNS from dnsmasq, masquerade")
    state = Path(nwg.options[nwg.options.index("--state-dir") + 1])
    sb.sysctl(sb.host_ns, {"net.ipv4.ip_forward": 0})  # the sandbox host's, to show the switch
    outside = sb.outside("outside", dn.OUT_IP, dn.OUT_HOST_IP)
    console.print(
        f"outside namespace: eth0 {dn.OUT_IP}/24, routed to the host namespace "
        f"({outside.port} {dn.OUT_HOST_IP}/24); host IPv4 forwarding is off",
        style="dim",
    )
    console.print(Syntax(dn.network_xml(), "xml", theme="ansi_dark"))
    nwg("net-define", nwg.file(f"{dn.NET_NAME}.xml", dn.network_xml()))
    active = False
    try:
        t0 = time.monotonic()
        nwg("net-start", dn.NET_NAME)
        active = True
        console.print(f"({time.monotonic() - t0:.2f} s, process start to exit)", style="dim")
        nwg("net-list")
        check(_net_started(sb, state))
        guests = [sb.guest(n, None, mac, bridge=dn.NET_BRIDGE) for n, mac in NET_GUESTS]
        console.print(
            f"guests {', '.join(g.ns for g in guests)}: eth0 without an address, plugged "
            f"into {dn.NET_BRIDGE}",
            style="dim",
        )
        leased = _net_leases(sb, guests, check)
        nwg("net-dhcp-leases", dn.NET_NAME)
        if len(leased) == len(guests):
            _net_traffic(sb, nwg, leased, outside, check)
        nwg("net-destroy", dn.NET_NAME)
        active = False
        nwg("net-undefine", dn.NET_NAME)
        nwg("net-list", "--all")
        check(_net_leftovers(sb, nwg, state))
    except Exception:
        if active:  # best effort; the sandbox's removal gets the rest
            with contextlib.suppress(Exception):
                nwg("net-destroy", dn.NET_NAME)
        raise
    return list(check)


def _net_started(sb: Sandbox, state: Path) -> Row:
    """What net-start did, as seen from the kernel and the process table."""
    links = sb.links(sb.host_ns)
    show = ["ip", "-o", "-4", "addr", "show", "dev", dn.NET_BRIDGE]
    addrs = sb.exec(sb.host_ns, show, check=False).stdout
    bridge_ok = dn.NET_BRIDGE in links and f"{dn.NET_PREFIX}.1/24" in addrs
    pids = dn.processes_mentioning(str(state))
    fwd = sb.read_sysctl(sb.host_ns, "net.ipv4.ip_forward")
    table = f"nwguard_net_{dn.NET_BRIDGE}"
    out = sb.exec(sb.host_ns, ["nft", "-j", "list", "table", "inet", table], check=False)
    rules = masq = 0
    if out.returncode == 0:
        for item in json.loads(out.stdout)["nftables"]:
            rule = item.get("rule")
            if rule:
                rules += 1
                masq += any("masquerade" in e for e in rule["expr"])
    happened = (
        f"bridge {dn.NET_BRIDGE} {dn.NET_PREFIX}.1/24, "
        f"dnsmasq pid {','.join(map(str, pids)) or 'none'}, ip_forward 0 → {fwd}, "
        f"its nft table: {rules} rules, {masq} of them masquerade"
    )
    ok = bridge_ok and len(pids) == 1 and fwd == "1" and rules > 0 and masq > 0
    return Row(f"net-start {dn.NET_NAME}", "all up", happened, ok)


def _net_leases(sb: Sandbox, guests: list[Guest], check: Checks) -> list[Guest]:
    """A DHCP exchange per guest, a row each; the guests that got (and now have) an address."""
    # One after the other: before offering an address dnsmasq pings it and waits ~3 s for
    # no answer, handling no other DHCP meanwhile (side by side is no faster).
    leased = []
    for g in guests:
        what = f"DHCP {g.name}: DISCOVER/REQUEST as '{g.name}' to dnsmasq"
        try:
            lease = dn.dhcp_lease(sb, g, g.name)
        except dn.NetDemoError as exc:
            check(Row(what, "a lease", str(exc), False))
            continue
        in_range = (
            lease.ip.startswith(f"{dn.NET_PREFIX}.")
            and 100 <= int(lease.ip.rsplit(".", 1)[1]) <= 199
        )
        gw = f"{dn.NET_PREFIX}.1"
        ok = in_range and lease.router == gw and lease.dns == gw and lease.prefix == 24
        happened = (
            f"ACK {lease.ip}/{lease.prefix}, router {lease.router}, DNS {lease.dns}, "
            f"lease {lease.seconds} s ({lease.elapsed * 1000:.0f} ms)"
        )
        check(Row(what, "a lease", happened, ok))
        leased.append(sb.configure(g, lease.ip, lease.prefix, lease.router))
    return leased


def _net_traffic(
    sb: Sandbox, nwg: Nwguard, guests: list[Guest], outside: Guest, check: Checks
) -> None:
    a, b = guests
    dns = f"{dn.NET_PREFIX}.1"
    listed = json.loads(nwg("net-dhcp-leases", dn.NET_NAME, "--json", echo=False))
    pairs = sorted((lease.get("hostname"), lease.get("ip")) for lease in listed)
    want = sorted((g.name, g.ip) for g in guests)
    check(Row(
        "net-dhcp-leases (dnsmasq's lease file)", "both guests",
        ", ".join(f"{h} {ip}" for h, ip in pairs) or "no leases", pairs == want,
    ))  # fmt: skip
    for src, dst in ((a, b), (b, a)):
        name = f"{dst.name}.{dn.NET_DOMAIN}"
        got = dn.dns_query(sb, src.ns, dns, name)
        happened = f"A {got}" if got else "no answer (1.5 s)"
        check(Row(f"DNS {src.name} asks {dns}: {name}", dst.ip, happened, got == dst.ip))
    target = dn.dns_query(sb, a.ns, dns, f"{b.name}.{dn.NET_DOMAIN}") or b.ip
    got, seen = sb.tcp_seen(a, b, target, 8080)
    check(Row(
        f"TCP {a.name} → {b.name}.{dn.NET_DOMAIN} ({target}) port 8080", PASS,
        f"connected, {b.name} saw {seen}" if seen else _outcome(got), seen == a.ip,
    ))  # fmt: skip
    for g in (a, b):
        got, seen = sb.tcp_seen(g, outside, dn.OUT_IP, 8080)
        happened = (
            f"connected; outside saw {seen}" + (" (masqueraded)" if seen == dn.OUT_HOST_IP else "")
            if seen
            else _outcome(got)
        )
        check(Row(
            f"TCP {g.name} ({g.ip}) → outside {dn.OUT_IP}:8080",
            f"passes, from {dn.OUT_HOST_IP}", happened, seen == dn.OUT_HOST_IP,
        ))  # fmt: skip
    got, seen = sb.tcp_seen(outside, a, a.ip, 8080)
    check(Row(
        f"TCP outside → {a.name} {a.ip}:8080 (listening), new inbound", "blocked",
        f"accepted from {seen}" if seen else _outcome(got), seen is None,
    ))  # fmt: skip


def _outcome(got: str) -> str:
    return {
        "ECONNREFUSED": "refused (rejected in the host namespace)",
        "timed out": "no answer: connect timed out",
        "EHOSTUNREACH": "host unreachable",
        "ENETUNREACH": "network unreachable",
    }.get(got, got)


def _net_leftovers(sb: Sandbox, nwg: Nwguard, state: Path) -> Row:
    """Everything a started and defined network could leave behind that is still there."""
    found = []
    if dn.NET_BRIDGE in sb.links(sb.host_ns):
        found.append(f"bridge {dn.NET_BRIDGE}")
    found += [f"process {pid}" for pid in dn.processes_mentioning(str(state))]
    tables = sb.exec(sb.host_ns, ["nft", "list", "tables"]).stdout
    found += [line.strip() for line in tables.splitlines() if "nwguard_net_" in line]
    netdir = state / "network"
    found += [f"file {p}" for p in sorted(netdir.rglob("*"))] if netdir.exists() else []
    config = Path(nwg.options[nwg.options.index("--config-dir") + 1]) / "networks"
    found += [f"config {p.name}" for p in sorted(config.rglob("*.xml"))] if config.exists() else []
    fwd = sb.read_sysctl(sb.host_ns, "net.ipv4.ip_forward")
    if fwd != "0":
        found.append(f"ip_forward still {fwd}")
    happened = (
        "no bridge, dnsmasq, nft table, state file or config; ip_forward back to 0"
        if not found
        else "left: " + ", ".join(found)
    )
    return Row(f"net-destroy + net-undefine {dn.NET_NAME}", "nothing left", happened, not found)


# ----------------------------------------------------------------------------- main


def results_table(rows: list[Row]) -> Table:
    table = Table(title="What was tried, and what happened", title_justify="left")
    table.add_column("#", justify="right", style="dim")
    table.add_column("what was tried")
    table.add_column("expected")
    table.add_column("what happened")
    table.add_column("OK", justify="center")
    for i, r in enumerate(rows, 1):
        ok = "[bold green]✔[/]" if r.ok else "[bold red]✘[/]"
        exp = f"[green]{r.expected}[/]" if r.expected == PASS else f"[yellow]{r.expected}[/]"
        table.add_row(str(i), r.what, exp, r.happened, ok)
    return table


def preflight() -> str | None:
    """Why the demo cannot run here, or None."""
    if os.geteuid() != 0:
        return "the demo needs root (it makes network namespaces): sudo make demo"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            return f"the demo needs '{tool}' (make demo installs it)"
    try:
        _scapy()
    except ImportError:
        return "the demo needs scapy (make demo installs it with the test extras)"
    return None


def run_demo(console: Console, tmp: Path) -> list[Row]:
    check = Checks(console)
    with signals_interrupt(), orphans_reaped(), Sandbox() as sb:
        guests = build_sandbox(console, sb)
        nwg = Nwguard(sb, tmp, console)
        filter_library(console, nwg)
        a, b, _ = guests
        console.print("Before any binding the bridge forwards whatever a guest sends:")
        label = f"spoofed source MAC {SPOOF_MAC}, before any binding"
        check(check_udp(sb, a, b, label, PASS, mac=SPOOF_MAC))
        bind_guests(console, sb, nwg, guests)
        traffic(sb, guests, check)
        no_spamming(sb, nwg, guests, check)
        check.extend(network_demo(console, sb, nwg))  # printed as they came
        if fwdemo.available():  # firewalld's part needs Debian's firewalld installed
            fwdemo.firewalld_demo(console, sb, nwg, lambda *r: check(Row(*r)))
        else:
            console.print("firewalld is not installed: its part of the demo is skipped")
        from nwguard_demo.containers import container_demo  # it imports this module

        check.extend(container_demo(console, sb, nwg, tmp))
        console.rule("[bold]Cleaning up")
    return list(check)


def main(argv: list[str] | None = None) -> int:
    console = Console()
    why = preflight()
    if why:
        console.print(f"[red]cannot run the demo:[/] {why}")
        return 2
    swept = sweep()
    if swept:
        console.print(f"removed namespaces left by an earlier, killed demo: {', '.join(swept)}")
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="nwguard-demo-"))
    try:
        rows = run_demo(console, tmp)
    except KeyboardInterrupt:
        console.print("\n[red]interrupted[/]: the sandbox has been removed")
        return 130
    except (DemoError, SandboxError) as exc:
        console.print(f"[red]the demo failed:[/] {exc}\n(the sandbox has been removed)")
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    console.print(f"sandbox namespaces and {tmp} removed")
    console.print(results_table(rows))
    bad = [r for r in rows if not r.ok]
    verdict = "[bold green]all as expected[/]" if not bad else f"[bold red]{len(bad)} unexpected[/]"
    console.print(f"{verdict} — {len(rows)} checks in {time.monotonic() - started:.1f} s")
    return 1 if bad or not rows else 0


if __name__ == "__main__":
    sys.exit(main())
