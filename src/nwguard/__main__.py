"""``python -m nwguard``: the ``nwguard`` command."""

from nwguard.cli import main

main()
