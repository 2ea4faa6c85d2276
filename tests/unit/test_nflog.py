"""The drop log's pieces that need no kernel: nflog packet messages and the log prefix."""

from __future__ import annotations

import socket
import struct

from nwguard.backends.nft.nflog import _attr, parse_packet
from nwguard.backends.nft.render import log_prefix, parse_log_prefix

L2 = bytes.fromhex("5254000000025254000000010800")
PAYLOAD = bytes.fromhex("4500001c") + bytes(16)


def message(*attrs: bytes) -> bytes:
    return struct.pack("=BBH", socket.AF_BRIDGE, 0, socket.htons(20055)) + b"".join(attrs)


def test_a_packet_message_gives_prefix_ports_and_the_frame() -> None:
    lo = struct.pack(">I", socket.if_nametoindex("lo"))
    m = message(_attr(10, b"nwguard c7ad5e81e4a25 3\0"), _attr(6, lo), _attr(21, L2),
                _attr(9, PAYLOAD))  # fmt: skip
    p = parse_packet(m)
    assert p is not None
    assert (p.prefix, p.indev, p.outdev, p.frame) == (
        "nwguard c7ad5e81e4a25 3",
        "lo",
        "",
        L2 + PAYLOAD,
    )


def test_the_vlan_tag_the_kernel_took_out_is_put_back() -> None:
    vlan = _attr(1, b"\x81\x00") + _attr(2, struct.pack(">H", 42))
    p = parse_packet(message(_attr(16, L2), _attr(9, PAYLOAD), _attr(20 | 0x8000, vlan)))
    assert p is not None
    assert p.frame == L2[:12] + b"\x81\x00\x00\x2a" + L2[12:] + PAYLOAD


def test_log_prefixes_name_a_rule_and_others_are_ignored() -> None:
    assert parse_log_prefix(log_prefix("c7ad5e81e4a25", 3)) == ("c7ad5e81e4a25", 3)
    for other in ("", "nwguard", "nwguard c1 x", "ulogd c1 3", "nwguard c1 3 4"):
        assert parse_log_prefix(other) is None
