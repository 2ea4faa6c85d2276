"""Reading ``nft -a monitor trace`` (pure): events, and what nwguard's rules decided. The lines
are nft 1.0.6's, from a clean-traffic port (``va``) as tracing printed them."""

from __future__ import annotations

from nwguard.backends.nft.trace import Decision, kernel_decision, parse_line, positions

PKT = 'iif "va" ether saddr 32:b5:b4:17:2a:0f ether daddr 52:54:00:00:00:99 ip saddr 10.9.0.7'
DROPPED = f"""\
trace id 53d81ac7 bridge nwguard_trace pre packet: {PKT}
trace id 53d81ac7 bridge nwguard_trace pre rule iifname "va" meta nftrace set 1 # handle 2 (verdict continue)
trace id 53d81ac7 bridge nwguard_trace pre policy accept
trace id 53d81ac7 bridge nwguard cnt_pre packet: {PKT}
trace id 53d81ac7 bridge nwguard cnt_pre rule update @seen_out {{ iifname }} # handle 22 (verdict continue)
trace id 53d81ac7 bridge nwguard cnt_pre policy accept
trace id 53d81ac7 bridge nwguard pre_l2 packet: {PKT}
trace id 53d81ac7 bridge nwguard pre_l2 rule iifname vmap @l2o # handle 5 (verdict goto c7a47e087275a)
trace id 53d81ac7 bridge nwguard c7a47e087275a rule jump c7ad5e81e4a25 # handle 46 (verdict jump c7ad5e81e4a25)
trace id 53d81ac7 bridge nwguard c7ad5e81e4a25 rule iifname . ether saddr @c7ad5e81e4a25_0 return # handle 56 (verdict return)
trace id 53d81ac7 bridge nwguard c7a47e087275a rule ether type ip jump cc7495235b8e8 # handle 47 (verdict jump cc7495235b8e8)
trace id 53d81ac7 bridge nwguard cc7495235b8e8 rule log prefix "nwguard cc7495235b8e8 2" group 20055 update @drops {{ iifname . oifname . c7:49:52:35:b8:e8 . 2 }} # handle 69 (verdict continue)
trace id 53d81ac7 bridge nwguard cc7495235b8e8 rule drop # handle 70 (verdict drop)
"""
ACCEPTED = f"""\
trace id 2c01b578 bridge nwguard pre_l2 rule iifname vmap @l2o # handle 5 (verdict goto c7a47e087275a)
trace id 2c01b578 bridge nwguard c7a47e087275a rule ether type ip accept # handle 48 (verdict accept)
trace id 2c01b578 inet nwguard ct_pre packet: {PKT}
trace id 2c01b578 inet nwguard ct_pre policy accept meta mark 0x01000000
trace id 2c01b578 bridge nwguard pre_l4 packet: {PKT}
trace id 2c01b578 bridge nwguard pre_l4 policy accept meta mark 0x01000000
trace id 2c01b578 bridge nwguard cnt_fwd packet: iif "va" oif "vb"
trace id 2c01b578 bridge nwguard post_l2 rule oifname vmap @l2i # handle 9 (verdict goto cbbef21dedfd1)
trace id 2c01b578 bridge nwguard cbbef21dedfd1 rule drop # handle 80 (verdict drop)
"""


def events(text: str) -> list:
    return [e for e in map(parse_line, text.splitlines()) if e is not None]


def test_lines_become_events_with_handles_and_verdicts() -> None:
    ev = events(DROPPED)
    assert len(ev) == len(DROPPED.splitlines())
    assert (ev[7].chain, ev[7].kind, ev[7].handle, ev[7].verdict) == ("pre_l2", "rule", 5, "goto")
    assert (ev[2].kind, ev[2].verdict, ev[2].handle) == ("policy", "accept", None)
    assert parse_line("not a trace line") is None


def test_the_decision_is_the_drop_rule_of_the_ports_side() -> None:
    assert kernel_decision(events(DROPPED), "out") == Decision("drop", "cc7495235b8e8", 70)


def test_what_happens_on_the_other_side_is_not_the_ports_decision() -> None:
    # accepted on the way out; the receiving port's drop is the in side's decision
    assert kernel_decision(events(ACCEPTED), "out") == Decision("accept", None, None)
    assert kernel_decision(events(ACCEPTED), "in") == Decision("drop", "cbbef21dedfd1", 80)


def test_positions_skip_the_counting_rules() -> None:
    def rule(handle: int, last: dict) -> dict:
        return {"rule": {"handle": handle, "expr": [{"match": {}}, last]}}

    update = {"set": {"op": "update", "set": "@drops"}}
    listing = {"nftables": [{"metainfo": {}}, rule(4, {"return": None}), rule(5, update),
                            rule(6, {"drop": None}), rule(7, update), rule(8, {"drop": None})]}  # fmt: skip
    assert positions("c1", lambda _cmd: listing) == {4: 1, 6: 2, 8: 3}
