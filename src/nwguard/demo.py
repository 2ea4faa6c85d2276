"""A short tour of nwguard, in a throw-away configuration directory: ``python -m nwguard.demo``.

For now it shows the filter library: list the built-in filters, define the ``no-spamming``
filter of libvirt's firewall documentation, dump it, list again. Nothing outside a temporary
directory is touched.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table

from .api import Client
from .model.filter import Filter

NO_SPAMMING = """\
<filter name='no-spamming' chain='root'>
  <uuid>d217f2d7-5a04-0e01-8b98-ec2743436b74</uuid>
  <rule action='drop' direction='out' priority='500'>
    <tcp dstportstart='25' dstportend='25'/>
  </rule>
</filter>
"""


def _table(title: str, filters: list[Filter], highlight: str | None = None) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("UUID", style="dim")
    table.add_column("Name")
    for f in filters:
        style = "bold green" if f.name == highlight else None
        table.add_row(f.uuid, f.name, style=style)
    return table


def main() -> None:
    console = Console()
    tmp = Path(tempfile.mkdtemp(prefix="nwguard-demo-"))
    try:
        client = Client.open(config_dir=str(tmp / "etc"), state_dir=str(tmp / "run"))
        console.rule("[bold]nwguard: the network filter library")
        console.print(f"configuration directory: {tmp / 'etc'} (temporary)\n")

        console.print("[bold]$ nwguard nwfilter-list[/]  (a fresh directory gets the built-ins)")
        console.print(_table("built-in filters", client.nwfilter_list()))

        console.print("\n[bold]$ nwguard nwfilter-define no-spamming.xml[/]")
        console.print(Syntax(NO_SPAMMING, "xml", theme="ansi_dark"))
        f = client.nwfilter_define(NO_SPAMMING, file="no-spamming.xml")
        console.print(f"Network filter {f.name} defined from no-spamming.xml\n")

        console.print("[bold]$ nwguard nwfilter-dumpxml no-spamming[/]")
        console.print(Syntax(client.nwfilter_dumpxml("no-spamming"), "xml", theme="ansi_dark"))

        console.print("[bold]$ nwguard nwfilter-dumpxml clean-traffic[/]")
        console.print(Syntax(client.nwfilter_dumpxml("clean-traffic"), "xml", theme="ansi_dark"))

        console.print("[bold]$ nwguard nwfilter-list[/]")
        console.print(_table("after the define", client.nwfilter_list(), highlight="no-spamming"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    console.print(f"\nremoved {tmp}")


if __name__ == "__main__":
    main()
