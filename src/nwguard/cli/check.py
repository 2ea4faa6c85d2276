"""``nwguard nwfilter-check`` (static findings on a filter) and ``nwfilter-graph`` (its DAG)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import click

from nwguard.cli.group import main_group
from nwguard.cli.main import Obj
from nwguard.errors import NwguardError
from nwguard.model.filter import Filter

if TYPE_CHECKING:
    from nwguard.explain.check import Finding


def _filters_and_top(obj: Obj, what: str) -> tuple[dict[str, Filter], str, str | None]:
    """The defined filters, with ``what`` (a name, or a file defining a filter) among them."""
    from nwguard.xmlio.filter_xml import parse_filter

    filters = {f.name: f for f in obj.client.nwfilter_list()}
    path = Path(what)
    if what not in filters and path.is_file():
        f = parse_filter(path.read_bytes(), what)
        filters[f.name] = f
        return filters, f.name, what
    if what not in filters:
        raise NwguardError(f"no filter named '{what}' and no such file")
    return filters, what, None


def format_findings(findings: list[Finding], files: Mapping[str, str]) -> list[str]:
    out = []
    for f in findings:
        where = files.get(f.filter, f.filter)
        at = f"{where}:{f.line}" if f.line else where
        rule = f" rule[{f.index}]" if f.index else ""
        out.append(f"{at}:{rule} {f.kind}: {f.message}")
    return out


@main_group.command("nwfilter-check")
@click.argument("what", metavar="NAME|FILE")
@click.option("--strict", is_flag=True, help="Exit 1 when there is any finding.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def nwfilter_check(obj: Obj, what: str, strict: bool, as_json: bool) -> None:
    """Find rules that never match, rules shadowed by earlier ones, accept/drop conflicts
    between filters, and variables no binding provides (nothing is applied)."""
    from nwguard.explain.check import check

    filters, top, file = _filters_and_top(obj, what)
    findings = check(filters, top)
    if as_json:
        keys = ("kind", "filter", "index", "line", "message")
        click.echo(json.dumps([{k: getattr(f, k) for k in keys} for f in findings], indent=2))
    else:
        files = {top: file} if file else {}
        for line in format_findings(findings, files):
            click.echo(line)
        if not findings:
            click.echo(f"{top}: no findings")
    if strict and findings:
        raise click.exceptions.Exit(1)


@main_group.command("nwfilter-graph")
@click.argument("what", metavar="NAME|FILE")
@click.option("--svg", "svg", type=click.Path(dir_okay=False), help="Write SVG (needs graphviz).")
@click.pass_obj
def nwfilter_graph(obj: Obj, what: str, svg: str | None) -> None:
    """Print the <filterref> DAG below a filter in Graphviz's DOT language."""
    from nwguard.explain.check import dot

    filters, top, _file = _filters_and_top(obj, what)
    text = dot(filters, top)
    if svg is None:
        click.echo(text, nl=False)
        return
    exe = shutil.which("dot")
    if exe is None:
        raise NwguardError("--svg needs graphviz's 'dot' (apt-get install graphviz)")
    done = subprocess.run([exe, "-Tsvg", "-o", svg], input=text.encode(), check=False,
                          capture_output=True)  # fmt: skip
    if done.returncode != 0:
        raise NwguardError(f"dot failed: {done.stderr.decode(errors='replace').strip()}")
