"""The client facade, the daemon's registry and the proxy list the same methods; the registry
refuses unknown methods and the read-only socket every change; changes carry their batch."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import pytest

from nwguard.api import CHANGE, METHODS, QUERY, Client
from nwguard.backends import RecordingExecutor
from nwguard.daemon import protocol as P
from nwguard.daemon.proxy import DaemonProxy
from nwguard.daemon.server import Daemon, Options
from nwguard.engine.bindings import BindingService
from nwguard.engine.filters import FilterService
from nwguard.engine.interfaces import InterfaceRecord, InterfaceService
from nwguard.engine.networks import NetworkService
from nwguard.engine.results import BindingChange, Change, FilterChange, InterfaceChange
from nwguard.engine.stats import StatsService
from nwguard.xmlio.filter_xml import parse_filter

ROOT = Path(__file__).resolve().parents[2]
PREFIXES = ("nwfilter_", "net_", "iface_")
SERVICES = (FilterService, BindingService, NetworkService, InterfaceService, StatsService)
DAEMON_OWN = {"daemon.info", "daemon.reapply"}

FILTER = "<filter name='t' chain='root'><rule action='drop' direction='out'><tcp dstportstart='{port}'/></rule></filter>"
BINDING = (
    "<filterbinding><owner><name>vm</name><uuid>d2b2f9b6-94ff-4aa7-b4b0-8f0e5b8e2a53</uuid></owner>"
    "<portdev name='lo'/><mac address='52:54:00:00:00:01'/><filterref filter='t'/></filterbinding>"
)


def _public(cls: type) -> set[str]:
    return {n for n, v in vars(cls).items() if callable(v) and n.startswith(PREFIXES)}


# ----------------------------------------------------------------------------- one list


def test_every_service_operation_is_on_the_facade_and_nothing_else():
    assert set(METHODS) == _public(Client)
    assert set().union(*map(_public, SERVICES)) == set(METHODS)


def test_every_facade_method_is_typed_documented_and_marked():
    for name, kind in METHODS.items():
        fn = getattr(Client, name)
        assert kind in (QUERY, CHANGE)
        assert fn.__doc__ and "\n" not in fn.__doc__.strip(), name
        sig = inspect.signature(fn)
        assert sig.return_annotation is not inspect.Signature.empty, name
        assert all(p.annotation is not p.empty for p in list(sig.parameters.values())[1:]), name
    assert not hasattr(Client, "__getattr__") and not hasattr(DaemonProxy, "__getattr__")


def test_every_method_the_code_calls_is_a_facade_method():
    """What the CLI, the daemon, the tests and bench/ call (or name) is in the facade."""
    called = set()
    pattern = re.compile(r"""[."'](?P<name>(?:nwfilter|net|iface)_[a-z_]+)(?:\(|["'])""")
    for top in ("src/nwguard/cli", "src/nwguard/daemon", "tests", "bench"):
        for f in (ROOT / top).rglob("*.py"):
            if f.name == Path(__file__).name:  # it names unknown methods on purpose
                continue
            called |= {m["name"] for m in pattern.finditer(f.read_text())}
    assert called <= set(METHODS), called - set(METHODS)
    cli = set()
    for f in (ROOT / "src/nwguard/cli").glob("*.py"):
        cli |= {m["name"] for m in pattern.finditer(f.read_text())}
    assert {"nwfilter_define", "nwfilter_binding_create", "net_start", "iface_attach"} <= cli


def test_proxy_registry_and_facade_list_the_same_methods(tmp_path):
    daemon = Daemon(
        Client.open(str(tmp_path / "etc"), str(tmp_path / "run")), Options(learning=False)
    )
    assert set(daemon.methods) - DAEMON_OWN == set(METHODS) == _public(DaemonProxy)
    assert {m: k for m, (_fn, k) in daemon.methods.items()} == P.KINDS
    assert P.KINDS["daemon.info"] == QUERY and P.KINDS["daemon.reapply"] == CHANGE
    for name in METHODS:  # each proxy method forwards, with the facade's signature and doc
        proxy_fn, facade_fn = vars(DaemonProxy)[name], vars(Client)[name]
        assert proxy_fn is not facade_fn and proxy_fn.__doc__ == facade_fn.__doc__
        assert inspect.signature(proxy_fn) == inspect.signature(facade_fn)


def test_queries_are_the_reads():
    queries = {m for m, k in METHODS.items() if k == QUERY}
    assert queries == {
        "nwfilter_list", "nwfilter_get", "nwfilter_dumpxml", "nwfilter_binding_list",
        "nwfilter_binding_dumpxml", "net_list", "net_info", "net_dumpxml", "net_edit_xml",
        "net_dhcp_leases", "iface_list", "nwfilter_binding_stats", "nwfilter_binding_stats_all",
    }  # fmt: skip


# ----------------------------------------------------------------------------- the registry


@pytest.fixture
def daemon(tmp_path):
    return Daemon(
        Client.open(str(tmp_path / "etc"), str(tmp_path / "run")), Options(learning=False)
    )


def _reply(daemon: Daemon, method: str, *args: object, readonly: bool = False) -> dict:
    return json.loads(daemon.handle(P.request(1, method, args), readonly, (1, 0)))


@pytest.mark.parametrize(
    "method", ["rm -rf", "open", "_networks", "ctx", "__init__", "nwfilter_nope", "call"]
)
def test_the_registry_refuses_unknown_methods(daemon, method):
    for readonly in (False, True):
        assert _reply(daemon, method, readonly=readonly)["error"] == {
            "code": "protocol",
            "message": f"unknown method {method!r}",
        }
    with pytest.raises(P.ProtocolError, match="unknown method"):
        daemon.call(method, [], {})


@pytest.mark.parametrize("method", sorted(m for m, k in P.KINDS.items() if k == CHANGE))
def test_the_read_only_socket_refuses_every_change(daemon, tmp_path, method):
    reply = _reply(daemon, method, "x", readonly=True)
    assert (
        reply["error"]["code"] == "permission" and "read-only socket" in reply["error"]["message"]
    )
    assert not (tmp_path / "etc").exists() and not (tmp_path / "run").exists()  # nothing ran


@pytest.mark.parametrize("method", sorted(m for m, k in P.KINDS.items() if k == QUERY))
def test_the_read_only_socket_serves_every_query(daemon, method):
    reply = _reply(daemon, method, readonly=True)  # no arguments
    fn, _kind = daemon.methods[method]
    needs_args = any(
        p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        for p in inspect.signature(fn).parameters.values()
    )
    if needs_args:  # served, and refused for its arguments, not for the socket
        assert reply["error"]["code"] == "protocol", reply
    else:
        assert "result" in reply, reply


# ----------------------------------------------------------------------------- one dry-run channel


class _Host:
    """Every port exists ('lo' is the bound one); no sysctl is touched."""

    def port_exists(self, name):
        return True

    def ensure_bridge_netfilter(self, hooked=(), released=()):
        pass


@pytest.fixture
def kernel():
    """Records the batches the engine sends, instead of the kernel."""
    return RecordingExecutor()


def _recorded(c, kernel):
    eng = c.ctx.engine()
    eng.executor, eng.host = kernel, _Host()


def test_changes_return_the_batch_they_applied(tmp_path, kernel):
    c = Client.open(str(tmp_path / "etc"), str(tmp_path / "run"))
    _recorded(c, kernel)
    defined = c.nwfilter_define(FILTER.format(port=25))
    assert isinstance(defined, FilterChange) and defined.filter.name == "t" and defined.applied
    assert not defined.batch and kernel.batches == []  # no port uses it yet
    bound = c.nwfilter_binding_create(BINDING)
    assert isinstance(bound, BindingChange) and bound.binding.portdev == "lo" and bound.applied
    assert kernel.batches == [bound.batch] and bound.batch.commands
    redefined = c.nwfilter_define(FILTER.format(port=26))
    assert redefined.batch is kernel.batches[-1] and len(kernel.batches) == 2
    again = c.nwfilter_define(FILTER.format(port=26))  # unchanged: nothing to rebuild
    assert again.batch is None and again.applied and len(kernel.batches) == 2
    deleted = c.nwfilter_binding_delete("lo")
    assert type(deleted) is Change and deleted.applied and deleted.batch is kernel.batches[-1]
    reapplied = c.nwfilter_reapply()
    assert reapplied.applied and reapplied.batch is kernel.batches[-1]


def test_dry_run_results_carry_the_batch_and_nothing_changes(tmp_path, kernel):
    c = Client.open(str(tmp_path / "etc"), str(tmp_path / "run"))
    _recorded(c, kernel)
    c.nwfilter_define(FILTER.format(port=25))
    c.nwfilter_binding_create(BINDING)
    sent = len(kernel.batches)
    dry = Client.open(str(tmp_path / "etc"), str(tmp_path / "run"), dry_run=True)
    _recorded(dry, kernel)
    redefined = dry.nwfilter_define(FILTER.format(port=80))
    assert not redefined.applied and redefined.batch.commands
    assert "dstportstart='25'" in c.nwfilter_dumpxml("t")
    deleted = dry.nwfilter_binding_delete("lo")
    assert not deleted.applied and deleted.batch.commands
    assert [b.portdev for b in c.nwfilter_binding_list()] == ["lo"]
    assert len(kernel.batches) == sent


def test_result_records_cross_the_socket():
    f = parse_filter(FILTER.format(port=25))
    iface = InterfaceRecord(
        "vnet0", "bridge", "br0", None, "52:54:00:00:00:01", ["10.0.0.2"], "t", True
    )
    for value in (
        Change({"nftables": [{"add": {"table": {"family": "inet", "name": "x"}}}]}, True),
        Change(None, False),
        FilterChange(batch=None, applied=True, filter=f),
        InterfaceChange(batch={"nftables": []}, applied=False, interface=iface),
    ):
        assert P.decode(json.loads(json.dumps(P.encode(value)))) == value
    with pytest.raises(P.ProtocolError):  # records are results, never arguments
        P.decode(P.encode(Change(None, False)), objects=False)
