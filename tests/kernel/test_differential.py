"""The differential harness against libvirt 9.0.0 (tests/kernel/differential.py).

A fixed seed corpus runs in ``make test`` (``NWGUARD_FUZZ_EXAMPLES`` filters, 40 by default,
hypothesis derandomised); ``make fuzz`` runs more with a random seed. Every difference in a
verdict, or one side refusing what the other takes, fails the test, except the intended
deviations listed in the README, each pinned by its own test below.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings

from .differential import (
    A_IP,
    X_IP,
    GenFilter,
    GenRule,
    Libvirt,
    NwguardSide,
    Outcome,
    compare,
    describe,
    filters,
    frames_for,
)
from .lab import Lab

pytestmark = pytest.mark.kernel

EXAMPLES = int(os.environ.get("NWGUARD_FUZZ_EXAMPLES", "40"))
FUZZING = "NWGUARD_FUZZ_EXAMPLES" in os.environ


@pytest.fixture(scope="module")
def sides(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Libvirt, NwguardSide]]:
    with Lab() as lab_lv, Lab() as lab_ng:
        lv = Libvirt(lab_lv, tmp_path_factory.mktemp("libvirt"))
        try:
            yield lv, NwguardSide(lab_ng, tmp_path_factory.mktemp("nwguard"))
        finally:
            lv.close()


OUTCOME = Outcome()


@pytest.mark.timeout(120 + 10 * EXAMPLES)  # about 3 s a filter
@settings(
    max_examples=EXAMPLES,
    derandomize=not FUZZING,
    database=None,
    deadline=None,
    # shrinking re-runs a failing filter dozens of times (minutes); the corpus reports the
    # first failing filter as found, make fuzz shrinks it
    phases=[Phase.explicit, Phase.generate, *([Phase.shrink] if FUZZING else [])],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(gf=filters())
# found by the harness: a reversed address range (nft refused the bind; iprange matches none)
@example(
    gf=GenFilter(
        (
            GenRule(
                "drop",
                "inout",
                500,
                "udp",
                (("dstipfrom", "192.0.2.99", False), ("dstipto", "192.0.2.20", False)),
            ),
            GenRule(
                "drop",
                "out",
                600,
                "tcp",
                (("srcipfrom", "192.0.2.20", True), ("srcipto", "192.0.2.10", True)),
            ),
        )
    )
)
# stp, always in the corpus: the Ethernet header's fields, negated, with return at the root
@example(
    gf=GenFilter(
        (
            GenRule(
                "return",
                "out",
                500,
                "stp",
                (("srcmacaddr", "$MAC", True), ("srcmacmask", "ff:ff:ff:00:00:00", True)),
            ),
            GenRule("drop", "in", 600, "stp", (("srcmacaddr", "52:54:00:0b:00:0b", False),)),
            GenRule("drop", "inout", 1000, "mac", ()),
        )
    )
)
def test_libvirt_and_nwguard_agree_on_every_frame(sides, gf) -> None:
    lv, ng = sides
    diffs, frames = compare(gf, lv, ng)
    OUTCOME.filters += 1
    OUTCOME.frames += max(frames, 0)
    OUTCOME.refused_both += frames < 0
    OUTCOME.differences += diffs
    seen = f"after {OUTCOME.filters - 1} agreeing filters, {OUTCOME.frames} frames"
    assert not diffs, seen + "\n" + describe(gf) + "\n" + "\n".join(diffs)


def test_report(sides) -> None:
    """The corpus's figures (run after the corpus; printed with -s)."""
    print(
        f"\ndifferential: {OUTCOME.filters} filters ({OUTCOME.refused_both} refused by both), "
        f"{OUTCOME.frames} frames compared, {len(OUTCOME.differences)} differences"
    )
    assert OUTCOME.filters == 0 or OUTCOME.frames > OUTCOME.filters


# ----------------------------------------------------------------------------- deviations

SUB_CHAIN_END = GenFilter(
    top=("sub", GenRule("drop", "inout", 1000, "mac", ())),
    sub=(GenRule("accept", "in", -100, "arp", (("opcode", "Reply", False),)),),
    sub_chain="arp",
)


def test_deviation_a_frame_running_off_an_ethernet_sub_chain_returns(sides) -> None:
    """libvirt asks ebtables for sub-chains with policy RETURN; Debian 12's ebtables-nft ends
    them with accept, so an ARP request that no rule of the arp chain takes is accepted by
    libvirt 9.0.0 here. nwguard returns to the root chain (its final drop applies), as the
    policy libvirt set means; the harness repairs libvirt's policy before comparing."""
    lv, ng = sides
    frames = {n: f for n, f in frames_for(SUB_CHAIN_END).items() if n.startswith("r1-b-as-is")}
    assert set(frames) == {"r1-b-as-is-match", "r1-b-as-is-miss-opcode"}
    lv.repair = False
    try:
        assert lv.apply(SUB_CHAIN_END.documents()) is None
        assert ng.apply(SUB_CHAIN_END.documents()) is None
        raw = lv.verdicts(frames)
        assert lv.repair_policies() == 1  # the arp sub-chain's trailing accept
        repaired, ours = lv.verdicts(frames), ng.verdicts(frames)
    finally:
        lv.repair = True
        lv.clear()
        ng.clear()
    # a reply is accepted by the sub-chain everywhere (the pass control)
    assert raw["r1-b-as-is-match"] and repaired["r1-b-as-is-match"] and ours["r1-b-as-is-match"]
    # a request runs off the end: accepted by unrepaired libvirt, dropped by the root chain
    assert raw["r1-b-as-is-miss-opcode"] is True
    assert repaired["r1-b-as-is-miss-opcode"] is False
    assert ours["r1-b-as-is-miss-opcode"] is False


def _pinned(sides, gf: GenFilter) -> tuple[str | None, dict[str, bool] | None, dict[str, bool]]:
    """Apply ``gf`` to both sides: (libvirt's error, libvirt's verdicts, nwguard's verdicts)."""
    lv, ng = sides
    frames = frames_for(gf)
    try:
        err = lv.apply(gf.documents())
        assert ng.apply(gf.documents()) is None
        return err, (None if err else lv.verdicts(frames)), ng.verdicts(frames)
    finally:
        lv.clear()
        ng.clear()


def test_deviation_continue_on_an_iptables_layer_rule(sides) -> None:
    """libvirt 9.0.0 cannot bind it; nwguard goes on with the next rule."""
    gf = GenFilter(
        (
            GenRule("continue", "out", 100, "udp", (("dstportstart", "80", False),)),
            GenRule("drop", "out", 200, "udp", (("dstportstart", "80", False),)),
        )
    )
    err, _, ours = _pinned(sides, gf)
    assert err is not None and "Chain 'CONTINUE' does not exist" in err
    assert ours["r0-a-as-is-match"] is False  # continued into the drop
    assert ours["r0-a-as-is-miss-dstportstart"] is True  # the pass control


def test_deviation_vlan_encap_protocol_matches_the_protocol_named(sides) -> None:
    gf = GenFilter((GenRule("drop", "out", 500, "vlan", (("encap-protocol", "ipv4", False),)),))
    err, theirs, ours = _pinned(sides, gf)
    assert err is None and theirs is not None
    assert theirs["r0-a-as-is-match"] is True  # libvirt's --vlan-encap 2048 (hex) never matches
    assert ours["r0-a-as-is-match"] is False
    assert ours["plain-a"] is True and theirs["plain-a"] is True  # untagged: the pass control


def test_deviation_dstipto_of_ipv6_protocols_is_an_ipv6_address(sides) -> None:
    gf = GenFilter(
        (
            GenRule(
                "drop",
                "out",
                500,
                "udp-ipv6",
                (("dstipfrom", "2001:db8::10", False), ("dstipto", "2001:db8::20", False)),
            ),
        )
    )
    err, _, ours = _pinned(sides, gf)
    assert err is not None and "dstipto has illegal value 2001:db8::20" in err
    assert ours["r0-a-as-is-match"] is False
    assert ours["r0-a-as-is-miss-dstipfrom"] is True  # the pass control


def test_deviation_a_lone_negated_dstportstart_stays_negated(sides) -> None:
    """libvirt copies the negation of srcportstart onto dstportstart, so a lone negated
    dstportstart matches its port; nwguard matches every other port, as written."""
    gf = GenFilter((GenRule("drop", "out", 500, "udp", (("dstportstart", "80", True),)),))
    err, theirs, ours = _pinned(sides, gf)
    assert err is None and theirs is not None
    assert theirs["r0-a-as-is-match"] is False and theirs["r0-a-as-is-miss-dstportstart"] is True
    assert ours["r0-a-as-is-match"] is True and ours["r0-a-as-is-miss-dstportstart"] is False


def test_deviation_an_address_and_a_range_both_count(sides) -> None:
    """With ``srcipaddr`` and ``srcipfrom``/``srcipto`` in one rule, libvirt 9.0.0 writes only
    the address (``-s``) and drops the range; nwguard matches both (the rule as written)."""
    attrs = (("srcipaddr", A_IP, False), ("srcipfrom", X_IP, False), ("srcipto", X_IP, False))
    gf = GenFilter((GenRule("drop", "out", 500, "udp", attrs),))
    err, theirs, ours = _pinned(sides, gf)
    assert err is None and theirs is not None
    assert theirs["plain-a"] is False  # from A_IP: libvirt's rule is -s A_IP only
    assert ours["plain-a"] is True  # A_IP is not in X_IP..X_IP
    control = "r0-a-as-is-miss-srcipaddr"  # from X_IP: matches neither rule
    assert theirs[control] is True and ours[control] is True


def _bpdu(tag: str, *, fwddelay: float, bpdutype: int = 0, version: int = 0) -> bytes:
    from scapy.layers.l2 import LLC, STP, Ether
    from scapy.packet import Raw

    from nwguard.model.protocols import STP_GROUP_MAC

    from .differential import A_MAC

    bpdu = STP(bpdutype=bpdutype, version=version, rootmac=A_MAC, bridgemac=A_MAC)
    bpdu.fwddelay = fwddelay  # seconds; on the wire in 1/256 s
    llc = LLC(dsap=0x42, ssap=0x42, ctrl=3)
    return bytes(Ether(src=A_MAC, dst=STP_GROUP_MAC) / llc / bpdu / Raw(tag.encode()))


def test_deviation_stp_fields_are_read_where_the_bpdu_has_them(sides) -> None:
    """The kernel's ebtables stp match (ebt_stp.c) takes the BPDU's protocol id as one byte,
    so it reads every field one byte early: its "type" is the version byte, its forward
    delay the hello time's low byte and the forward delay's high byte. libvirt's rule for
    ``forward-delay='1'`` (``--stp-forward-delay 1``) therefore matches a forward delay of
    256 (1 s) and not 1; nwguard matches the field as the BPDU carries it."""
    lv, ng = sides
    rule = GenRule(
        "return",
        "out",
        500,
        "stp",
        (("type", "0", False), ("forward-delay", "1", False), ("forward-delay-hi", "1", False)),
    )
    gf = GenFilter((rule, GenRule("drop", "inout", 1000, "mac", ())))
    frames = {
        "fwd 1": ("a", _bpdu("fwd 1", fwddelay=1 / 256)),  # the field is 1
        "fwd 256": ("a", _bpdu("fwd 256", fwddelay=1.0)),  # ebt_stp reads 1
        "tcn": ("a", _bpdu("tcn", fwddelay=1 / 256, bpdutype=0x80)),  # version 0: "config"
    }
    try:
        assert lv.apply(gf.documents()) is None
        assert ng.apply(gf.documents()) is None
        theirs, ours = lv.verdicts(frames), ng.verdicts(frames)
    finally:
        lv.clear()
        ng.clear()
    assert theirs == {"fwd 1": False, "fwd 256": True, "tcn": False}
    assert ours == {"fwd 1": True, "fwd 256": False, "tcn": False}


def test_deviation_ip_dscp_is_the_dscp_field(sides) -> None:
    """libvirt writes ``<ip dscp='10'>`` as ``ebtables --ip-tos 0x0A``, which compares the
    whole TOS byte (DSCP and ECN) with 10: it matches DSCP 2 with ECN 2, not DSCP 10. nwguard
    (nftables) matches the DSCP field, as the attribute is documented."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    from .differential import A_IP, A_MAC, B_IP, B_MAC

    lv, ng = sides
    gf = GenFilter((GenRule("drop", "out", 500, "ip", (("dscp", "10", False),)),))

    def frame(tos: int) -> tuple[str, bytes]:
        ip = IP(src=A_IP, dst=B_IP, tos=tos)
        return "a", bytes(Ether(src=A_MAC, dst=B_MAC) / ip / UDP() / Raw(f"tos {tos}".encode()))

    frames = {"dscp 10": frame(10 << 2), "tos 10": frame(10), "dscp 0": frame(0)}
    try:
        assert lv.apply(gf.documents()) is None
        assert ng.apply(gf.documents()) is None
        theirs, ours = lv.verdicts(frames), ng.verdicts(frames)
    finally:
        lv.clear()
        ng.clear()
    assert theirs == {"dscp 10": True, "tos 10": False, "dscp 0": True}
    assert ours == {"dscp 10": False, "tos 10": True, "dscp 0": True}
