"""``python -m nwguard``: the ``nwguard`` command."""

from nwguard.cli.main import main

main()
