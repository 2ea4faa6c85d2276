"""IP address learning in the compiler: the interim rules and the learned ``$IP`` (pure).

A binding whose filter references ``$IP`` without a value (spec §3) is decided here:

* ``CTRL_IP_LEARNING`` (first value, case-insensitive; default ``any``): ``none`` → the
  unresolvable-variables error naming ``IP``; ``any`` / ``dhcp`` → the port gets the interim
  rules of spec §4.4 and a learning request (see :mod:`nwguard.learned`) that ``nwguardd``
  serves; another value → "filter 'F' learning value 'V' invalid".
* Once addresses are learned, :func:`params` adds them as ``IP`` and the port's own filter
  applies with them.

The interim rules are ordinary filters, nwguard-internal (never in the filter directory, so
no user filter can shadow them), compiled by the same resolver and compiler as any filter:
every learning port shares the same kernel chains.

* ``basic`` (mode ``any``): from the guest, a source MAC other than ``$MAC`` is dropped,
  IPv4 and ARP are accepted, everything else is dropped; traffic to the guest is not filtered.
* ``dhcp`` (mode ``dhcp``): from the guest only DHCP requests (UDP 68→67, source MAC
  ``$MAC``); to the guest only DHCP replies (UDP 67→68 to ``$MAC`` or broadcast), with
  ``DHCPSERVER`` only from those servers; everything else dropped both ways.

Learned addresses are an input here and a learning request an output: the engine reads
the first (:mod:`nwguard.engine.learning`) and hands the second to whoever serves it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from nwguard.compile.program import Contribution, compile_port
from nwguard.errors import ResolveError
from nwguard.model.binding import FilterBinding
from nwguard.model.filter import Filter
from nwguard.records import ValueRecord
from nwguard.resolve.resolver import UnresolvedError, resolve
from nwguard.xmlio.filter_xml import parse_filter

LEARNING_VAR = "CTRL_IP_LEARNING"
SERVER_VAR = "DHCPSERVER"
MODES = ("any", "dhcp", "none")

_BASIC = """<filter name='nwguard-learn-basic' chain='root'>
  <uuid>5c0b7f4e-6a38-4f0e-9d0e-6c8b1a2f0001</uuid>
  <rule action='drop' direction='out' priority='100'><mac match='no' srcmacaddr='$MAC'/></rule>
  <rule action='accept' direction='out' priority='200'><mac protocolid='ipv4'/></rule>
  <rule action='accept' direction='out' priority='300'><mac protocolid='arp'/></rule>
  <rule action='drop' direction='out' priority='1000'><mac/></rule>
</filter>"""

_DHCP = """<filter name='nwguard-learn-dhcp{suffix}' chain='root'>
  <uuid>5c0b7f4e-6a38-4f0e-9d0e-6c8b1a2f000{n}</uuid>
  <rule action='accept' direction='out' priority='100'>
    <ip srcmacaddr='$MAC' protocol='udp' srcportstart='68' dstportstart='67'/>
  </rule>
  <rule action='drop' direction='out' priority='1000'><mac/></rule>
  <rule action='accept' direction='in' priority='100'>
    <ip dstmacaddr='$MAC' {server}protocol='udp' srcportstart='67' dstportstart='68'/>
  </rule>
  <rule action='accept' direction='in' priority='100'>
    <ip dstmacaddr='ff:ff:ff:ff:ff:ff' {server}protocol='udp' srcportstart='67' dstportstart='68'/>
  </rule>
  <rule action='drop' direction='in' priority='1000'><mac/></rule>
</filter>"""


@functools.cache
def interim_filters() -> Mapping[str, Filter]:
    """The interim rule sets as filters: ``nwguard-learn-basic``, ``-dhcp``, ``-dhcp-servers``."""
    docs = [
        _BASIC,
        _DHCP.format(suffix="", n=2, server=""),
        _DHCP.format(suffix="-servers", n=3, server="srcipaddr='$DHCPSERVER[@1]' "),
    ]
    filters = [parse_filter(d, "<nwguard interim learning rules>") for d in docs]
    return {f.name: f for f in filters}


def learning_mode(b: FilterBinding) -> str:
    """The binding's ``CTRL_IP_LEARNING`` mode; ResolveError for an unknown value."""
    values = b.params().get(LEARNING_VAR)
    if not values:
        return "any"
    mode = values[0].lower()
    if mode not in MODES:
        raise ResolveError(f"filter '{b.filterref.filter}' learning value '{values[0]}' invalid")
    return mode


class LearningRequest(ValueRecord):
    """A port that waits for its ``IP``: what to watch, and how."""

    port: str
    mac: str
    mode: str  # "any" or "dhcp"
    iface: str  # where to capture: linkdev if the binding has one, else the port
    servers: tuple[str, ...] = ()


def params(b: FilterBinding, learned: tuple[str, ...] = ()) -> dict[str, tuple[str, ...]]:
    """The binding's variables plus, when it gives no ``IP``, the addresses learned for it."""
    env = b.params()
    if "IP" not in env and learned:
        env["IP"] = learned
    return env


def interim(b: FilterBinding, exc: UnresolvedError) -> tuple[Contribution, LearningRequest]:
    """The interim rules of a port that waits for its ``IP``, and its learning request
    (re-raise ``exc`` if the port cannot learn)."""
    if exc.missing != {"IP"}:
        raise exc
    mode = learning_mode(b)
    if mode == "none":
        raise exc
    servers = b.params().get(SERVER_VAR, ()) if mode == "dhcp" else ()
    env: dict[str, tuple[str, ...]]
    if mode == "any":
        top, env = "nwguard-learn-basic", {"MAC": (b.mac,)}
    elif servers:
        top, env = "nwguard-learn-dhcp-servers", {"MAC": (b.mac,), SERVER_VAR: servers}
    else:
        top, env = "nwguard-learn-dhcp", {"MAC": (b.mac,)}
    contrib = compile_port(b.portdev, resolve(interim_filters(), top, env))
    return contrib, LearningRequest(b.portdev, b.mac, mode, b.linkdev or b.portdev, tuple(servers))
