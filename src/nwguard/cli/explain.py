"""``nwguard explain PORT``: the path of one packet through a port's rules (pure evaluation)."""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from nwguard.cli.group import main_group
from nwguard.cli.main import Obj
from nwguard.errors import NwguardError

PEER_MAC = "52:54:00:00:00:01"
_STATES = ("new", "established", "related", "invalid", "none")


def read_pcap(path: str) -> list[bytes]:
    """The frames of a classic pcap file (Ethernet link type); pcapng through scapy if present."""
    data = Path(path).read_bytes()
    if len(data) < 24:
        raise NwguardError(f"{path}: not a pcap file")
    magic = data[:4]
    endian = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">",
              b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\x3c\x4d": ">"}.get(magic)  # fmt: skip
    if endian is None:
        return _read_with_scapy(path)
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    if linktype != 1:
        raise NwguardError(f"{path}: link type {linktype} is not Ethernet")
    frames, off = [], 24
    while off + 16 <= len(data):
        incl = struct.unpack(endian + "I", data[off + 8 : off + 12])[0]
        frames.append(data[off + 16 : off + 16 + incl])
        off += 16 + incl
    return frames


def _read_with_scapy(path: str) -> list[bytes]:
    try:
        from scapy.utils import rdpcap
    except ImportError:
        raise NwguardError(f"{path}: not a classic pcap file (pcapng needs scapy)") from None
    try:
        return [bytes(p) for p in rdpcap(path)]
    except Exception as exc:  # noqa: BLE001 - scapy raises many kinds for a bad file
        raise NwguardError(f"{path}: cannot read packets: {exc}") from None


def _filter_files(filters: Mapping[str, object], nwfilter_dir: Path) -> dict[str, str]:
    """Each filter's XML file: the stored one, else a built-in's source (a dry run's preview)."""
    from importlib import resources

    builtin = resources.files("nwguard.builtin")
    out = {}
    for name in filters:
        path = nwfilter_dir / f"{name}.xml"
        if path.exists():
            out[name] = str(path)
        elif (src := builtin / f"{name}.xml").is_file():
            out[name] = str(src)
    return out


@main_group.command("explain")
@click.argument("port")
@click.option("--out", "out_desc", is_flag=False, flag_value="", default=None, metavar="DESC",
              help="A packet from the guest: 'tcp 10.0.0.5:40000 > 10.0.0.9:25' (or, with "
                   "--frame/--pcap, just the direction).")  # fmt: skip
@click.option(
    "--in",
    "in_desc",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="DESC",
    help="A packet to the guest: 'arp reply 10.0.0.9 is-at 52:54:00:aa:bb:cc'.",
)
@click.option("--frame", metavar="HEX", help="The packet as the hex bytes of its Ethernet frame.")
@click.option("--pcap", type=click.Path(dir_okay=False, exists=True), help="Explain every packet of a pcap file.")  # fmt: skip
@click.option("--mac", help="The guest's MAC in the frame (default: the binding's).")
@click.option("--peer-mac", default=PEER_MAC, show_default=True, help="The other side's MAC.")
@click.option("--vlan", type=click.IntRange(0, 4095), help="Tag the described frame with this VLAN id.")  # fmt: skip
@click.option("--state", type=click.Choice(_STATES), help="Connection state (default: what a lone packet gets).")  # fmt: skip
@click.option("--reply", is_flag=True, help="The packet is in the connection's reply direction.")
@click.option("--binding", "binding_file", type=click.Path(dir_okay=False, exists=True),
              help="Explain against this <filterbinding> XML instead of PORT's binding (nothing "
                   "is applied: the binding need not exist).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--live", is_flag=True, help="Also wait for such a packet on PORT and check in the "
              "kernel (nftables tracing) that it meets the same verdict and rule; exit 3 if not.")  # fmt: skip
@click.option(
    "--timeout", type=float, default=30.0, show_default=True, help="Seconds --live waits."
)
@click.pass_obj
def explain_cmd(
    obj: Obj, port: str, out_desc: str | None, in_desc: str | None, frame: str | None,
    pcap: str | None, mac: str | None, peer_mac: str, vlan: int | None, state: str | None,
    reply: bool, binding_file: str | None, as_json: bool, live: bool, timeout: float,
) -> None:  # fmt: skip
    """Show every rule a packet meets on PORT, where each rule comes from, and the verdict.

    Exit status 0 when every packet is accepted, 2 when one is dropped or rejected.
    """
    from nwguard.explain import Conntrack, decode, explain, port_contribution, to_json, to_text
    from nwguard.explain.describe import describe
    from nwguard.state.paths import Paths
    from nwguard.xmlio.binding_xml import parse_binding

    if (out_desc is None) == (in_desc is None):
        raise click.UsageError("give exactly one of --out and --in")
    direction, desc = ("out", out_desc) if out_desc is not None else ("in", in_desc or "")
    sources = sum(x is not None and x != "" for x in (desc or None, frame, pcap))
    if sources != 1:
        raise click.UsageError("give the packet once: --out/--in DESC, --frame HEX or --pcap FILE")
    if binding_file is not None:
        b = parse_binding(Path(binding_file).read_bytes(), binding_file)
        if b.portdev != port:
            raise click.UsageError(f"{binding_file} binds port {b.portdev}, not {port}")
    else:
        b = parse_binding(obj.client.nwfilter_binding_dumpxml(port))
    filters = {f.name: f for f in obj.client.nwfilter_list()}
    contrib = port_contribution(b, filters)
    if frame is not None:
        try:
            frames = [bytes.fromhex(frame.replace(":", "").replace(" ", ""))]
        except ValueError:
            raise click.UsageError("--frame takes hex bytes") from None
    elif pcap is not None:
        frames = read_pcap(pcap)
    else:
        guest = mac or b.mac
        src, dst = (guest, peer_mac) if direction == "out" else (peer_mac, guest)
        frames = [describe(desc, src_mac=src, dst_mac=dst, vlan=vlan)]
    ct = None
    if state is not None:
        ct = Conntrack(None if state == "none" else state, reply)
    elif reply:
        ct = Conntrack("established", True)
    nwfilter_dir = Paths.from_env(obj.config_dir, obj.state_dir).nwfilter_dir
    files = _filter_files(filters, nwfilter_dir)
    results = [explain(contrib, port, decode(f), direction, ct) for f in frames]
    check = _live(port, direction, frames, results[0], timeout) if live else None
    if as_json:
        docs = [to_json(e, files) for e in results]
        if check is not None:
            docs[0]["live"] = check
        click.echo(json.dumps(docs[0] if pcap is None else docs, indent=2))
    else:
        click.echo("\n\n".join(to_text(e, files) for e in results))
        if check is not None:
            click.echo(_live_text(check))
    if check is not None and not check["agrees"]:
        raise click.exceptions.Exit(3)
    if any(e.verdict != "accept" for e in results):
        raise click.exceptions.Exit(2)


def _live(port: str, direction: str, frames: list[bytes], e: Any, timeout: float) -> dict[str, Any]:
    """The kernel's verdict on the next such packet (nftables tracing), next to explain's."""
    from nwguard.backends.nft.trace import Tracer, kernel_decision, positions

    if len(frames) != 1:
        raise click.UsageError("--live follows one packet: give one (not a pcap of several)")
    with Tracer(port, direction, frames[0]) as tracer:
        side = "sends" if direction == "out" else "receives"
        click.echo(f"live: waiting {timeout:g} s for {port} to {side} such a packet", err=True)
        events = tracer.wait(timeout)
    if events is None:
        raise NwguardError(f"live: no such packet within {timeout:g} s")
    d = kernel_decision(events, direction)
    pos = positions(d.chain).get(d.handle) if d.chain and d.handle is not None else None
    step = e.decided_by
    mine = {"verdict": e.verdict, "chain": step.chain if step else None,
            "position": step.position if step else None}  # fmt: skip
    kernel = {"verdict": d.verdict, "chain": d.chain if d.verdict != "accept" else None,
              "position": pos if d.verdict != "accept" else None}  # fmt: skip
    return {"explain": mine, "kernel": kernel, "agrees": mine == kernel}


def _live_text(check: dict[str, Any]) -> str:
    k, m = check["kernel"], check["explain"]
    where = f" by [{k['chain']}#{k['position']}]" if k["chain"] else ""
    if check["agrees"]:
        return f"live: the kernel agrees: {k['verdict']}{where}"
    mine = f" by [{m['chain']}#{m['position']}]" if m["chain"] else ""
    return (f"live: DISAGREEMENT, a bug in nwguard (please report it): explain says "
            f"{m['verdict']}{mine}, the kernel did {k['verdict']}{where}")  # fmt: skip
