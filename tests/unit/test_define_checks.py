"""Define refuses what can never bind, bind errors name port/filter/rule, an empty filter's
binding is a binding (issue 10, items 4 and 7)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nwguard.api import Client
from nwguard.backends import RecordingExecutor
from nwguard.builtin import builtin_filters
from nwguard.compile.check import unbindable
from nwguard.compile.program import PortCompiler
from nwguard.errors import CompileError, NotFoundError, ResolveError, XMLError
from nwguard.xmlio.filter_xml import parse_filter

BINDING = """<filterbinding>
  <owner><name>vm</name><uuid>d217f2d7-5a04-0e01-8b98-ec2743436b74</uuid></owner>
  <portdev name='lo'/><mac address='52:54:00:00:00:09'/><filterref filter='{f}'/>
</filterbinding>"""


def _doc(body: str, direction: str = "out") -> str:
    return (
        "<filter name='x'>\n  <rule action='drop' direction='" + direction + "'>\n"
        f"    {body}\n  </rule>\n</filter>"
    )


class _Host:
    def port_exists(self, name: str) -> bool:
        return True

    def ensure_bridge_netfilter(self, hooked=(), released=()) -> None:
        pass


@pytest.fixture
def client(tmp_path: Path) -> tuple[Client, RecordingExecutor]:
    c = Client.open(str(tmp_path / "etc"), str(tmp_path / "run"))
    kernel = RecordingExecutor()
    eng = c.ctx.engine()
    eng.executor, eng.host = kernel, _Host()
    return c, kernel


# (body, direction, attribute named, words of the message)
NEVER = [
    ("<tcp dstportend='80'/>", "out", "dstportend", "'dstportend' needs 'dstportstart'"),
    ("<udp srcportend='$P'/>", "out", "srcportend", "'srcportend' needs 'srcportstart'"),
    ("<tcp state='$S'/>", "in", "state", "cannot come from a variable"),
    ("<tcp option='$O'/>", "in", "option", "cannot come from a variable"),
    ("<stp srcmacaddr='52:54:00:00:00:01'/>", "inout", None, "STP filtering in inout"),
]


@pytest.mark.parametrize(("body", "direction", "attr", "words"), NEVER)
def test_define_refuses_what_can_never_bind(client, body, direction, attr, words) -> None:
    c, kernel = client
    with pytest.raises(XMLError) as info:
        c.nwfilter_define(_doc(body, direction), "x.xml")
    err = info.value
    tag = body[1:].split()[0].rstrip("/>")
    where = f"x.xml:3 /filter[@name='x']/rule[1]/{tag}" + (f"/@{attr}" if attr else "")
    assert str(err).startswith(where + ": "), str(err)
    assert words in str(err)
    assert "x" not in {f.name for f in c.nwfilter_list()}  # nothing stored
    assert kernel.batches == []


# what the iptables backend binds and the nftables one cannot: defined (the backend in
# force may change), refused when a port binds it on nftables, naming the attribute
BACKEND_ONLY = [
    ("<tcp ipset='blocked' ipsetflags='src'/>", "ipset"),
    ("<udp-ipv6 connlimit-above='3'/>", "connlimit-above"),
    ("<arp gratuitous='true'/>", "gratuitous"),
]


@pytest.mark.parametrize(("body", "attr"), BACKEND_ONLY)
def test_what_only_iptables_binds_is_defined_and_refused_by_nftables_at_render(body, attr) -> None:
    from nwguard.backends.nft.render import to_nft
    from nwguard.compile.kernel_state import KernelState, full
    from nwguard.compile.program import compile_port
    from nwguard.resolve.resolver import resolve

    f = parse_filter(_doc(body), "x.xml")  # defined: no error
    c = compile_port("vnet0", resolve({"x": f}, "x", {}))
    with pytest.raises(CompileError, match=attr):
        to_nft(full(KernelState().with_port("vnet0", c)))


# the same shapes, one step from the refused ones: defined, and bound
ALMOST = [
    "<tcp dstportstart='70' dstportend='80'/>",
    "<udp srcportstart='$P' srcportend='9000'/>",
    "<ip srcipaddr='$IP' srcipmask='$MASK'/>",
    "<tcp state='NEW'/>",
    "<tcp option='2'/>",
    "<arp gratuitous='false'/>",
    "<stp srcmacaddr='52:54:00:00:00:01'/>",
]


@pytest.mark.parametrize("body", ALMOST)
def test_define_accepts_its_near_neighbours(client, body) -> None:
    c, _ = client
    assert c.nwfilter_define(_doc(body), "x.xml").filter.name == "x"


def test_every_builtin_and_the_parser_alone_are_unaffected() -> None:
    assert all(
        unbindable(e) is None for f in builtin_filters().values() for e in f.rules
    )  # a built-in can always bind
    parse_filter(_doc("<tcp dstportend='80'/>"))  # only define asks the compiler


def test_a_bind_time_error_names_port_filter_and_rule() -> None:
    fs = builtin_filters()
    fs["inner"] = parse_filter(
        "<filter name='inner'><rule action='accept' direction='out'><all/></rule>"
        "<rule action='drop' direction='out'><tcp dstportstart='$P'/></rule></filter>"
    )
    fs["outer"] = parse_filter("<filter name='outer'><filterref filter='inner'/></filter>")
    with pytest.raises(ResolveError) as info:
        PortCompiler(fs).compile("vnet7", "outer", {"P": ("http",)})
    assert str(info.value) == (
        "port vnet7: filter 'inner' (via outer > inner) rule[2]: variable P value 'http' is "
        "not valid for tcp dstportstart: expected an integer from 0 to 65535 (decimal or hex)"
    )


def test_the_engine_does_not_name_the_port_twice(client) -> None:
    c, _ = client
    c.nwfilter_define(_doc("<tcp dstportstart='$P'/>"))
    binding = BINDING.format(f="x").replace(
        "<filterref filter='x'/>",
        "<filterref filter='x'><parameter name='P' value='http'/></filterref>",
    )
    with pytest.raises(ResolveError) as info:
        c.nwfilter_binding_create(binding)
    assert str(info.value).startswith("port lo: filter 'x' rule[1]: variable P value 'http'")
    assert str(info.value).count("port lo") == 1


def test_an_empty_filters_binding_is_listed_dumped_deleted_and_gains_rules(client) -> None:
    c, kernel = client
    c.nwfilter_define("<filter name='empty' chain='root'/>")
    c.nwfilter_binding_create(BINDING.format(f="empty"))
    assert [(b.portdev, b.filterref.filter) for b in c.nwfilter_binding_list()] == [("lo", "empty")]
    assert "<filterref filter='empty'/>" in c.nwfilter_binding_dumpxml("lo")
    assert kernel.batches == []  # nothing for the kernel yet
    # redefined with a rule: the bound port gets it
    c.nwfilter_define(
        "<filter name='empty' chain='root'><rule action='drop' direction='out'>"
        "<tcp dstportstart='25'/></rule></filter>"
    )
    assert len(kernel.batches) == 1 and "lo" in repr(kernel.batches[0])
    c.nwfilter_define("<filter name='empty' chain='root'/>")  # empty again
    c.nwfilter_binding_delete("lo")
    assert c.nwfilter_binding_list() == []
    with pytest.raises(NotFoundError):
        c.nwfilter_binding_dumpxml("lo")


def test_an_empty_binding_is_deleted_without_a_kernel_change(client) -> None:
    c, kernel = client
    c.nwfilter_define("<filter name='empty'/>")
    c.nwfilter_binding_create(BINDING.format(f="empty"))
    c.nwfilter_binding_delete("lo")
    assert c.nwfilter_binding_list() == [] and kernel.batches == []
    with pytest.raises(NotFoundError):
        c.nwfilter_binding_delete("lo")
