"""One dnsmasq per network: its config file, start, stop, and its leases.

The config is built from the typed model only (addresses, MACs, DNS names and interface
names were checked by the parser), and every line is checked again for control characters
before it is written. dnsmasq is started with an argument list (no shell), bound to the
network's bridge only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from nwguard.errors import HostError
from nwguard.model.network import IPConfig, Lease, Network
from nwguard.state.files import atomic_write, remove_file

DNSMASQ = "/usr/sbin/dnsmasq"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class DnsmasqFiles:
    """Where one network's dnsmasq keeps its files (all inside ``dir``)."""

    dir: Path

    @property
    def conf(self) -> Path:
        return self.dir / "dnsmasq.conf"

    @property
    def pid(self) -> Path:
        return self.dir / "dnsmasq.pid"

    @property
    def leases(self) -> Path:
        return self.dir / "dnsmasq.leases"

    def all(self) -> tuple[Path, ...]:
        return (self.conf, self.pid, self.leases)


# ----------------------------------------------------------------------------- config (pure)


def _line(key: str, value: object = None) -> str:
    text = key if value is None else f"{key}={value}"
    if any(c in text for c in "\n\r\0"):
        raise HostError(f"refusing to write a dnsmasq option with a control character: {text!r}")
    return text


def _interface(name: str) -> str:
    # dnsmasq splits a list at ',' and unquotes '"' and '\\'; the kernel allows all three
    if any(c in name for c in ',"\\'):
        raise HostError(f"dnsmasq cannot serve on an interface called {name!r}")
    return name


def _dhcp_lines(ip: IPConfig) -> list[str]:
    mask = ip.network.netmask if not ip.is_v6 else ip.prefix
    out = []
    for r in ip.ranges:
        lease = _lease_text(r.lease)
        value = f"{r.start},{r.end},{mask}" + (f",{lease}" if lease else "")
        out.append(_line("dhcp-range", value))
    for h in ip.hosts:
        who = h.mac if h.mac else (f"id:{h.id}" if h.id else None)
        addr = None if h.ip is None else (f"[{h.ip}]" if ip.is_v6 else str(h.ip))
        parts = [p for p in (who, addr, h.name, _lease_text(h.lease)) if p]
        out.append(_line("dhcp-host", ",".join(parts)))
    return out


def _lease_text(lease: Lease | None) -> str | None:
    if lease is None:
        return None
    return "infinite" if lease.seconds == 0 else str(lease.seconds)


def _lease_max(ips: list[IPConfig]) -> int:
    size = sum(int(r.end) - int(r.start) + 1 for ip in ips for r in ip.ranges)
    size += sum(len(ip.hosts) for ip in ips)
    return max(1, min(size, 1 << 24))


def _dns_lines(net: Network) -> list[str]:
    dns = net.dns
    if dns is not None and not dns.enabled:
        return [_line("port", 0)]
    out: list[str] = []
    if net.domain is not None:
        out += [_line("domain", net.domain.name), _line("expand-hosts")]
        if net.domain.local_only:
            out.append(_line("local", f"/{net.domain.name}/"))
    if dns is None:
        return out
    if dns.forward_plain_names is False:
        out.append(_line("domain-needed"))
    for f in dns.forwarders:
        if f.domain and f.addr:
            out.append(_line("server", f"/{f.domain}/{f.addr}"))
        elif f.domain:
            out.append(_line("local", f"/{f.domain}/"))
        else:
            out.append(_line("server", f.addr))
    if any(f.addr and not f.domain for f in dns.forwarders):
        out.append(_line("no-resolv"))
    return out


def render_config(net: Network, files: DnsmasqFiles, user: str = "nobody") -> str:
    """The dnsmasq config for ``net`` (pure; deterministic); dnsmasq drops root for ``user``."""
    out = [
        f"# dnsmasq for nwguard virtual network {net.name}; generated, do not edit",
        _line("user", user),
        _line("strict-order"),
        _line("pid-file", files.pid),
        _line("except-interface", "lo"),
        _line("bind-dynamic"),
        _line("interface", _interface(net.bridge_name)),
        _line("dhcp-leasefile", files.leases),
    ]
    out += _dns_lines(net)
    out += _host_records(net)
    dhcp = [ip for ip in (net.dhcp_ip("ipv4"), net.dhcp_ip("ipv6")) if ip is not None]
    if dhcp:
        out += [_line("dhcp-no-override"), _line("dhcp-authoritative")]
        out.append(_line("dhcp-lease-max", _lease_max(dhcp)))
    for ip in dhcp:
        out += _dhcp_lines(ip)
    if net.ips_of("ipv6"):
        out.append(_line("enable-ra"))
    return "\n".join(out) + "\n"


def _host_records(net: Network) -> list[str]:
    """``<dns><host>`` entries as ``host-record`` lines (read as root at start, unlike a
    hosts file that dnsmasq would read after dropping privileges)."""
    out = []
    domain = net.domain.name if net.domain else None
    for h in net.dns.hosts if net.dns else ():
        names = list(h.hostnames)
        if domain:
            names += [f"{n}.{domain}" for n in h.hostnames if "." not in n]
        out.append(_line("host-record", ",".join([*names, str(h.ip)])))
    return out


def needed(net: Network) -> bool:
    """Whether ``net`` needs a dnsmasq (DHCP, DNS or router advertisements to serve)."""
    dns_on = net.dns is None or net.dns.enabled
    return bool(net.ips) and (dns_on or bool(net.dhcp_ip("ipv4") or net.dhcp_ip("ipv6")))


# ----------------------------------------------------------------------------- process


def start(net: Network, files: DnsmasqFiles) -> int:
    """Write the files and start dnsmasq for ``net``; return its pid.

    Raises HostError with dnsmasq's own message when it does not start (e.g. a port in use).
    """
    files.dir.mkdir(parents=True, exist_ok=True)
    atomic_write(files.conf, render_config(net, files, _unprivileged_user()), mode=0o644)
    if not files.leases.exists():
        atomic_write(files.leases, "", mode=0o644)
    remove_file(files.pid)
    argv = [DNSMASQ, f"--conf-file={files.conf}"]
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=START_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HostError(f"cannot run {DNSMASQ} for network '{net.name}': {exc}") from exc
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().replace(
            "\n", " / "
        ) or f"exit status {proc.returncode}"
        raise HostError(f"dnsmasq for network '{net.name}' failed to start: {msg}")
    pid = read_pid(files)
    if pid is None or not is_running(pid, files):
        raise HostError(f"dnsmasq for network '{net.name}' exited right after starting")
    return pid


def _unprivileged_user() -> str:
    """The user dnsmasq runs as: ``dnsmasq`` (Debian's dnsmasq-base makes it), else nobody."""
    import pwd

    try:
        pwd.getpwnam("dnsmasq")
    except KeyError:
        return "nobody"
    return "dnsmasq"


def read_pid(files: DnsmasqFiles) -> int | None:
    """The pid recorded in the pid file, if any."""
    try:
        return int(files.pid.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def is_running(pid: int, files: DnsmasqFiles) -> bool:
    """Whether ``pid`` is alive (not a zombie) and is the dnsmasq of these ``files``."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z" and f"--conf-file={files.conf}".encode() in cmdline


def stop(pid: int | None, files: DnsmasqFiles) -> None:
    """Stop the dnsmasq ``pid`` (SIGTERM, then SIGKILL), if it is still ours; remove its files."""
    if pid is not None and is_running(pid, files):
        _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while is_running(pid, files) and time.monotonic() < deadline:
            time.sleep(0.02)
        if is_running(pid, files):
            _signal(pid, signal.SIGKILL)
            deadline = time.monotonic() + STOP_TIMEOUT
            while is_running(pid, files) and time.monotonic() < deadline:
                time.sleep(0.02)
        if is_running(pid, files):
            raise HostError(f"dnsmasq (pid {pid}) did not stop")
    for path in files.all():
        remove_file(path)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


# ----------------------------------------------------------------------------- leases


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """One line of ``net-dhcp-leases``."""

    expiry: int
    mac: str | None
    protocol: str
    ip: str
    prefix: int
    hostname: str | None
    client_id: str | None

    def to_json(self) -> dict[str, object]:
        return {
            "expiry": self.expiry,
            "mac": self.mac,
            "protocol": self.protocol,
            "ip": self.ip,
            "prefix": self.prefix,
            "hostname": self.hostname,
            "client_id": self.client_id,
        }


def parse_leases(text: str, net: Network) -> list[LeaseRecord]:
    """Parse a dnsmasq lease file (IPv4 lines, then ``duid`` and IPv6 lines)."""
    from ipaddress import ip_address

    out = []
    for line in text.splitlines():
        f = line.split()
        if len(f) < 4 or f[0] == "duid":
            continue
        try:
            addr = ip_address(f[2])
        except ValueError:
            continue
        prefix = next(
            (ip.prefix for ip in net.ips if addr in ip.network), 32 if addr.version == 4 else 128
        )
        v6 = addr.version == 6
        out.append(
            LeaseRecord(
                int(f[0]) if f[0].isdigit() else 0,
                None if v6 else _unset(f[1]),
                "ipv6" if v6 else "ipv4",
                str(addr),
                prefix,
                _unset(f[3]),
                _unset(f[4]) if len(f) > 4 else None,
            )
        )
    return out


def _unset(field: str) -> str | None:
    """dnsmasq writes ``*`` for a lease's unknown MAC, hostname or client id."""
    return None if field == "*" else field
