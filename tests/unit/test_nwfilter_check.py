"""nwfilter-check finds planted never-matching, shadowed and conflicting rules and unset
variables; on the 24 built-ins it reports only the parameters they document."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from nwguard.builtin import builtin_filters
from nwguard.cli.main import main_group, register
from nwguard.explain.check import check, dot
from nwguard.model.filter import Filter
from nwguard.xmlio.filter_xml import parse_filter

WIDE = """<filter name='wide'>
<rule action='accept' direction='out' priority='100'><tcp/></rule></filter>"""
PLANTED = """<filter name='planted'>
<filterref filter='wide'/>
<rule action='drop' direction='out'><tcp dstportstart='25'/></rule>
<rule action='accept' direction='out'><ipv6 protocol='udp' type='128'/></rule>
<rule action='drop' direction='out'><udp dstportstart='100' dstportend='50'/></rule>
<rule action='accept' direction='inout'><icmp type='8'/></rule>
<rule action='drop' direction='out'><udp dstportstart='$PORT'/></rule>
<rule action='accept' direction='in' priority='600'><udp/></rule>
<rule action='accept' direction='in' priority='700'><udp srcportstart='53'/></rule>
</filter>"""


def filters(*xml: str) -> dict[str, Filter]:
    out: dict[str, Filter] = dict(builtin_filters())
    for x in xml:
        f = parse_filter(x)
        out[f.name] = f
    return out


def test_planted_findings() -> None:
    found = {(f.kind, f.filter, f.index, f.line) for f in check(filters(WIDE, PLANTED), "planted")}
    assert found == {
        ("conflict", "planted", 1, 3),  # wide accepts all tcp first
        ("never", "planted", 2, 4),  # icmpv6 type with protocol udp
        ("never", "planted", 3, 5),  # empty port range
        ("never", "planted", 4, 6),  # icmp type inout: no copy at all
        ("variable", "planted", 5, 7),
        ("shadowed", "planted", 7, 9),  # accept all udp in comes first
    }


def test_the_builtins_only_report_the_parameters_they_document() -> None:
    fs = filters()
    assert len(fs) == 24
    found = {(n, f.kind, f.message.split()[0]) for n in fs for f in check(fs, n)}
    assert found == {
        ("allow-dhcp-server", "variable", "$DHCPSERVER"),
        ("allow-dhcpv6-server", "variable", "$DHCPSERVER"),
        ("clean-traffic-gateway", "variable", "$GATEWAY_MAC"),
        ("no-ipv6-spoofing", "variable", "$IPV6"),
    }


def test_a_missing_reference_is_an_error_finding() -> None:
    f = parse_filter("<filter name='x'><filterref filter='nope'/></filter>")
    [finding] = check({"x": f}, "x")
    assert finding.kind == "error" and "nope" in finding.message


def test_graph_is_the_filterref_dag() -> None:
    text = dot(filters(), "clean-traffic")
    assert text.startswith('digraph "clean-traffic" {')
    assert '"clean-traffic" -> "no-ip-spoofing";' in text
    assert '"no-arp-spoofing" -> "no-arp-mac-spoofing";' in text
    assert text.count(" -> ") == 10


def cli(tmp_path: Path, *args: str) -> tuple[int, str]:
    register()
    base = ["--config-dir", str(tmp_path / "etc"), "--state-dir", str(tmp_path / "run")]
    r = CliRunner().invoke(main_group, [*base, *args], env={"NWGUARD_NO_DAEMON": "1"})
    return r.exit_code, r.output


def test_cli_check_strict_and_define_warnings(tmp_path: Path) -> None:
    (tmp_path / "wide.xml").write_text(WIDE)
    (tmp_path / "planted.xml").write_text(PLANTED)
    code, out = cli(tmp_path, "nwfilter-define", str(tmp_path / "wide.xml"))
    assert code == 0 and "warning" not in out, out
    code, out = cli(tmp_path, "nwfilter-check", str(tmp_path / "planted.xml"))
    assert code == 0 and f"{tmp_path}/planted.xml:9: rule[7] shadowed:" in out, out
    code, out = cli(tmp_path, "nwfilter-check", "--strict", "--json", str(tmp_path / "planted.xml"))
    assert code == 1 and len(json.loads(out)) == 6, out
    code, out = cli(tmp_path, "nwfilter-check", "--strict", "clean-traffic")
    assert code == 0 and out == "clean-traffic: no findings\n", out
    code, out = cli(tmp_path, "nwfilter-define", str(tmp_path / "planted.xml"))
    assert code == 0 and out.count("warning: ") == 6 and "conflict" in out, out
    code, out = cli(tmp_path, "nwfilter-graph", "planted")
    assert code == 0 and '"planted" -> "wide";' in out
