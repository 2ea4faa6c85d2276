"""The stats service's arithmetic (pure): kernel counter listings → per-port, per-side,
per-rule counts in the filters' terms; and the ``top`` rates."""

from __future__ import annotations

from nwguard.backends.nft.counters import RawCounters, parse
from nwguard.backends.nft.render import rule_id
from nwguard.cli.stats import Rates, rule_name, stats_json
from nwguard.compile.kernel_state import KernelState
from nwguard.engine.stats import compute

from .test_golden import CASES, contribution

PORT = CASES["clean-traffic"].port


def state() -> KernelState:
    return KernelState().with_port(PORT, contribution(CASES["clean-traffic"]))


def drop_rules(st: KernelState) -> list[tuple[str, int]]:
    return [
        (c, i) for c, rules in sorted(st.chains.items()) for i, r in enumerate(rules)
        if r.verdict.kind == "drop"
    ]  # fmt: skip


def listing(name: str, elems: list[tuple[object, int, int]]) -> dict:
    """A set as ``nft -j list set`` gives it (the shape libnftables 1.0.6 prints)."""
    body = {"family": "bridge", "name": name, "table": "nwguard", "type": "ifname",
            "handle": 3, "size": 65535, "stmt": [{"counter": None}],
            "elem": [{"elem": {"val": v, "counter": {"packets": p, "bytes": b}}}
                     for v, p, b in elems]}  # fmt: skip
    return {"nftables": [{"metainfo": {"version": "1.0.6"}}, {"set": body}]}


def test_parse_reads_the_drops_listing_in_frame_bytes_and_skips_the_declaration_rule() -> None:
    chain, pos = drop_rules(state())[0]
    cid, idx = rule_id(chain, pos)
    drops = parse(
        listing(
            "drops",
            [
                ({"concat": [PORT, "", cid, idx]}, 3, 300),
                ({"concat": ["", "", "00:00:00:00:00:00", 0]}, 0, 0),
            ],
        ),
    )
    # the bridge hooks count from the network header: 14 bytes a frame added back
    assert drops == {(PORT, "", chain, pos): (3, 300 + 3 * 14)}
    empty = {"nftables": [{"set": {"name": "drops"}}]}  # no element yet: no "elem" key
    assert parse(empty) == {}


def test_rule_ids_name_the_chain_and_position_and_refuse_other_names() -> None:
    assert rule_id("c7ad5e81e4a25", 3) == ("7a:d5:e8:1e:4a:25", 3)
    for bad in ("pre_l2", "c7ad5e81e4a2", "c7ad5e81e4a2g"):
        try:
            rule_id(bad, 0)
        except ValueError:
            continue
        raise AssertionError(bad)


def test_accepted_is_what_the_interface_took_less_drops_and_what_it_gave() -> None:
    st = state()
    (c1, p1), (c2, p2) = drop_rules(st)[:2]
    raw = RawCounters(
        {PORT: (10, 1000), "vnet9": (50, 5000)},  # what the interfaces took from their guests
        {PORT: (4, 500)},  # what they gave to them: the rules' drops are not in it
        {
            (PORT, "", c1, p1): (3, 300),  # sent by the port (out: no oifname)
            ("vnet9", PORT, c2, p2): (2, 150),  # sent to it by vnet9
            ("uplink", PORT, c2, p2): (1, 50),
            ("vnet9", "", c1, p1): (40, 4000),  # another port's: not counted here
            (PORT, "", "c0123456789ab", 1): (1, 10),  # a rule no longer in force
        },
    )
    (s,) = compute(st, raw, [PORT], at=12.5)
    assert (s.sent.accepted.packets, s.sent.accepted.bytes) == (6, 690)
    assert (s.sent.dropped.packets, s.sent.dropped.bytes) == (4, 310)
    assert (s.received.accepted.packets, s.received.accepted.bytes) == (4, 500)
    assert (s.received.dropped.packets, s.received.dropped.bytes) == (3, 200)
    assert [(r.side, r.chain, r.position, r.packets) for r in s.rules] == [
        ("in", c2, p2, 3), ("out", c1, p1, 3), ("out", "c0123456789ab", 1, 1),
    ]  # fmt: skip
    first = st.chains[c2][p2].origin
    assert first is not None
    assert (s.rules[0].filter, s.rules[0].index, s.rules[0].line) == (
        first.filter, first.index, first.line,
    )  # fmt: skip
    assert rule_name(s.rules[0]).startswith(" > ".join(first.path) + f" rule[{first.index}]")
    assert s.rules[2].filter == "" and "no longer in force" in rule_name(s.rules[2])
    data = stats_json(s)
    assert data["sent"]["dropped"] == {"packets": 4, "bytes": 310}
    assert data["rules"][0]["rule"] == first.index and data["time"] == 12.5


def test_a_port_without_counts_yet_has_zeros() -> None:
    (s,) = compute(state(), RawCounters({}, {}, {}), [PORT], at=0.0)
    assert s.sent.accepted.packets == s.received.dropped.bytes == 0 and s.rules == ()


def test_rates_are_per_second_between_two_readings() -> None:
    st = state()
    chain, pos = drop_rules(st)[0]
    first = compute(st, RawCounters({PORT: (10, 0)}, {}, {}), [PORT], at=100.0)
    later = compute(
        st, RawCounters({PORT: (30, 0)}, {PORT: (4, 0)}, {(PORT, "", chain, pos): (6, 0)}),
        [PORT], at=102.0,
    )  # fmt: skip
    rates = Rates()
    assert rates.update(first) == {PORT: (0.0, 0.0, 0.0, 0.0)}  # no earlier reading
    assert rates.update(later) == {PORT: (7.0, 3.0, 2.0, 0.0)}  # (24-10)/2, 6/2, 4/2
