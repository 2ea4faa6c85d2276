"""Choosing the firewall backend: ``nwguard.conf``, the environment, probes, the dry run."""

from __future__ import annotations

from pathlib import Path

import pytest

from nwguard.backends.choice import BackendChoice, choose, iptables_unusable, make_executor
from nwguard.backends.ebiptables.executor import EbiptablesExecutor, Runner
from nwguard.backends.nft.executor import NftExecutor
from nwguard.compile.kernel_state import KernelState, diff, full
from nwguard.engine.context import Context
from nwguard.errors import ApplyError, ConfigError, HostError
from nwguard.ir.nodes import Batch, Table
from nwguard.state.config import (
    Config,
    FirewallSetting,
    firewall_setting,
    parse_config,
    read_config,
    write_settings,
)
from nwguard.state.paths import Paths

from .test_golden import CASES, contribution


def test_config_file_syntax_of_libvirts_network_conf() -> None:
    text = '# comment\n\nfirewall_backend = "iptables"  # why\niptables_variant=legacy\n'
    assert parse_config(text, "f") == Config("iptables", "legacy")
    assert parse_config("", "f") == Config()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("firewall_backend = ipt\n", "f:1: firewall_backend 'ipt' is not nftables or iptables"),
        ("\niptables_variant = nf\n", "f:2: iptables_variant 'nf' is not nft or legacy"),
        ("firewall = nftables\n", "f:1: unknown key 'firewall'"),
        ("firewall_backend\n", "f:1: expected 'key = value'"),
    ],
)
def test_config_errors_name_file_line_and_what_is_allowed(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(text, "f")


def test_the_environment_overrides_the_file(tmp_path: Path) -> None:
    assert read_config(tmp_path) == Config()  # no file: nothing set
    assert firewall_setting(tmp_path, {}) == FirewallSetting(None, None, "default")
    (tmp_path / "nwguard.conf").write_text("firewall_backend = nftables\niptables_variant = nft\n")
    conf = str(tmp_path / "nwguard.conf")
    assert firewall_setting(tmp_path, {}) == FirewallSetting("nftables", "nft", conf)
    env = {"NWGUARD_FIREWALL_BACKEND": "iptables", "NWGUARD_IPTABLES_VARIANT": "legacy"}
    assert firewall_setting(tmp_path, env) == FirewallSetting(
        "iptables", "legacy", "NWGUARD_FIREWALL_BACKEND"
    )
    with pytest.raises(ConfigError, match="NWGUARD_FIREWALL_BACKEND: .* 'pf' is not"):
        firewall_setting(tmp_path, {"NWGUARD_FIREWALL_BACKEND": "pf"})


def _ok(*_: object) -> None:
    return None


def test_unset_means_nftables_when_usable_else_iptables() -> None:
    unset = FirewallSetting(None, None, "default")
    assert choose(unset, _ok, _ok) == BackendChoice("nftables", None, "default")
    got = choose(unset, lambda: "no kernel support", _ok)
    assert (got.name, got.variant) == ("iptables", "nft")
    with pytest.raises(HostError, match="nftables: no kernel support; iptables: no tools"):
        choose(unset, lambda: "no kernel support", lambda v: "no tools")


def test_a_chosen_backend_whose_tools_are_missing_is_a_clear_error() -> None:
    ipt = FirewallSetting("iptables", "legacy", "x.conf")
    assert choose(ipt, lambda: "unused", _ok) == BackendChoice("iptables", "legacy", "x.conf")
    seen: list[str] = []
    with pytest.raises(HostError, match=r"iptables \(x.conf\) is not usable: gone"):
        choose(ipt, _ok, lambda v: seen.append(v) or "gone")
    assert seen == ["legacy"]
    with pytest.raises(HostError, match=r"nftables \(env\) is not usable: no lib"):
        choose(FirewallSetting("nftables", None, "env"), lambda: "no lib", _ok)


def test_missing_tools_are_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    why = iptables_unusable("legacy")
    assert why is not None and "ebtables-legacy-restore" in why and "apt-get install" in why
    for tool in ("ebtables", "iptables", "ip6tables"):
        for suffix in ("-save", "-restore"):
            (tmp_path / f"{tool}-legacy{suffix}").write_text("")
            (tmp_path / f"{tool}-legacy{suffix}").chmod(0o755)
    assert iptables_unusable("legacy") is None
    assert iptables_unusable("nft") is not None  # the other variant's tools are still absent


def test_the_context_gives_the_engine_the_chosen_executor(tmp_path: Path) -> None:
    paths = Paths(tmp_path / "etc", tmp_path / "run")
    ipt = Context(paths, backend=BackendChoice("iptables", "legacy", "t")).engine().executor
    assert isinstance(ipt, EbiptablesExecutor) and ipt.runner.tools["eb"] == "ebtables-legacy"
    nft = Context(paths, backend=BackendChoice("nftables", None, "t")).engine().executor
    assert isinstance(nft, NftExecutor)
    assert isinstance(make_executor(BackendChoice("iptables", "nft", "t")), EbiptablesExecutor)


class Host(Runner):
    """A host whose tables hold what ``saved`` says; nothing is ever restored."""

    def __init__(self, saved: dict[str, str]) -> None:
        super().__init__("nft")
        self.saved = saved

    def save(self, kind: str) -> str:
        return self.saved.get(kind, "")

    def restore(self, kind: str, text: str) -> None:
        raise AssertionError("a dry run must not apply")


def test_dry_run_commands_of_a_diff_are_planned_on_the_state_in_force() -> None:
    case = CASES["clean-traffic"]
    one = KernelState().with_port(case.port, contribution(case))
    two = one.with_port("vnet7", contribution(case))
    empty = EbiptablesExecutor(runner=Host({}))
    # the kernel holds the first port as the backend made it (its restore input is also
    # what ``ebtables-save`` lists for it)
    first = {argv[0]: text for argv, text in empty.restore_commands(full(one))}
    saved = {"eb": first["ebtables-nft-restore"]}
    fresh = EbiptablesExecutor(runner=Host(saved))
    with pytest.raises(ApplyError, match="whole state"):  # no base: the diff cannot be planned
        fresh.restore_commands(diff(one, two, {"vnet7"}))
    fresh.base = lambda: full(one)
    cmds = fresh.restore_commands(diff(one, two, {"vnet7"}))
    assert [argv for argv, _ in cmds] == [["ebtables-nft-restore", "--noflush"]]
    text = cmds[0][1]
    assert ":libvirt-I-vnet7 RETURN" in text and "-A PREROUTING -i vnet7 -j libvirt-I-vnet7" in text
    assert case.port not in text  # the port already in force is not touched
    assert fresh.restore_commands(Batch()) == []
    net = Batch()
    net.add(Table("ip", "x"))
    with pytest.raises(ApplyError, match="virtual networks"):
        fresh.restore_commands(net)


def test_write_settings_keeps_other_lines_and_checks_values(tmp_path: Path) -> None:
    conf = tmp_path / "nwguard.conf"
    conf.write_text('# mine\nfirewall_backend = "nftables"  # old\n')
    write_settings(tmp_path, firewall_backend="iptables", iptables_variant="legacy")
    assert conf.read_text() == (
        '# mine\nfirewall_backend = "iptables"\niptables_variant = "legacy"\n'
    )
    assert read_config(tmp_path) == Config("iptables", "legacy")
    with pytest.raises(ConfigError, match="'pf' is not"):
        write_settings(tmp_path, firewall_backend="pf")
    assert read_config(tmp_path) == Config("iptables", "legacy")  # unchanged


def test_nwguardd_records_the_backend_and_moves_nothing_without_a_change(tmp_path: Path) -> None:
    from nwguard.engine.switch import applied_backend, follow_setting

    paths = Paths(tmp_path / "etc", tmp_path / "run")
    ipt = BackendChoice("iptables", "nft", "t")
    assert applied_backend(paths) is None  # no record: nothing is known to move
    assert follow_setting(Context(paths, backend=ipt)) is None
    recorded = applied_backend(paths)
    assert recorded is not None and (recorded.name, recorded.variant) == ("iptables", "nft")
    assert follow_setting(Context(paths, backend=ipt)) is None  # the same backend: no move
