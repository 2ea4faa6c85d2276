"""Lenient define (``nwfilter-define --lenient``, ``lenient = 1`` in nwguard.conf): what
libvirt ignores is ignored, with one warning each naming file, line and attribute; strict
stays the default."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from nwguard.api import Client
from nwguard.cli.main import main_group, register
from nwguard.errors import ConfigError, XMLError
from nwguard.state.config import parse_config
from nwguard.xmlio.filter_xml import parse_filter, write_filter

# as in libvirt's own test filters: protocolid on <arp>, and more it does not know
LIBVIRT_STYLE = """<filter name='migrated' chain='root' colour='blue'>
  <rule action='drop' direction='out' priority='100' log='yes'>
    <arp protocolid='0x806' opcode='Request'/>
  </rule>
  <rule action='accept' direction='in'>
    <tcp dstportstart='22'/>
    <tcp-ish/>
  </rule>
  <description>from an old host</description>
  <filterref filter='clean-traffic' flavour='x'/>
</filter>
"""
STRICT_TWIN = """<filter name='migrated' chain='root'>
  <rule action='drop' direction='out' priority='100'>
    <arp opcode='Request'/>
  </rule>
  <rule action='accept' direction='in'>
    <tcp dstportstart='22'/>
  </rule>
  <filterref filter='clean-traffic'/>
</filter>
"""
WARNED = [
    ("1", "attribute 'colour' of <filter>"),
    ("2", "attribute 'log' of <rule>"),
    ("3", "attribute 'protocolid' of <arp>"),
    ("7", "element <tcp-ish> in <rule>"),
    ("9", "element <description> in <filter>"),
    ("10", "attribute 'flavour' of <filterref>"),
]


def test_strict_refuses_what_libvirt_ignores() -> None:
    with pytest.raises(XMLError) as exc:
        parse_filter(LIBVIRT_STYLE, "old.xml")
    assert exc.value.attribute == "colour"
    with pytest.raises(XMLError, match="unknown attribute 'protocolid' for <arp>"):
        parse_filter(LIBVIRT_STYLE.replace(" colour='blue'", "").replace(" log='yes'", ""))


def test_lenient_ignores_each_unknown_with_one_located_warning() -> None:
    warnings: list[str] = []
    f = parse_filter(LIBVIRT_STYLE, "old.xml", warn=warnings.append)
    assert len(warnings) == len(WARNED)
    for got, (line, what) in zip(warnings, WARNED, strict=True):
        assert got.startswith(f"old.xml:{line}: unknown {what} ignored"), got
    # the filter is what the known part says
    assert write_filter(f) == write_filter(parse_filter(uuid_of(f)))


def uuid_of(f) -> str:  # the twin takes the same uuid
    return STRICT_TWIN.replace("chain='root'>", f"chain='root'><uuid>{f.uuid}</uuid>", 1)


def test_lenient_still_refuses_bad_values() -> None:
    with pytest.raises(XMLError, match="illegal value"):
        parse_filter(LIBVIRT_STYLE.replace("opcode='Request'", "opcode='Sometimes'"), warn=print)


def test_config_key_and_the_option(tmp_path: Path) -> None:
    c = Client.open(config_dir=str(tmp_path / "etc"), state_dir=str(tmp_path / "run"))
    with pytest.raises(XMLError):
        c.nwfilter_define(LIBVIRT_STYLE, "old.xml")  # strict by default
    assert len(c.nwfilter_define(LIBVIRT_STYLE, "old.xml", lenient=True).warnings) == 6
    (tmp_path / "etc" / "nwguard.conf").write_text("lenient = 1\n")
    assert len(c.nwfilter_define(LIBVIRT_STYLE, "old.xml").warnings) == 6
    with pytest.raises(XMLError):
        c.nwfilter_define(LIBVIRT_STYLE, "old.xml", lenient=False)
    assert c.nwfilter_define(STRICT_TWIN).warnings == ()


def test_config_values() -> None:
    assert parse_config('lenient = "1"\n', "c").lenient_define
    assert not parse_config("lenient = 0\n", "c").lenient_define
    assert not parse_config("", "c").lenient_define
    with pytest.raises(ConfigError, match="lenient 'yes' is not 0 or 1"):
        parse_config("lenient = yes\n", "c")


def test_cli_lenient_prints_the_warnings(tmp_path: Path) -> None:
    register()
    (tmp_path / "old.xml").write_text(LIBVIRT_STYLE)
    base = ["--config-dir", str(tmp_path / "etc"), "--state-dir", str(tmp_path / "run")]
    env = {"NWGUARD_NO_DAEMON": "1"}
    r = CliRunner().invoke(
        main_group, [*base, "nwfilter-define", str(tmp_path / "old.xml")], env=env
    )
    assert isinstance(r.exception, XMLError) and r.exception.attribute == "colour"
    argv = [*base, "nwfilter-define", "--lenient", str(tmp_path / "old.xml")]
    r = CliRunner().invoke(main_group, argv, env=env)
    assert r.exit_code == 0, r.output
    assert f"warning: {tmp_path}/old.xml:3: unknown attribute 'protocolid' of <arp>" in r.output
    assert r.output.count("ignored (lenient mode") == 6
