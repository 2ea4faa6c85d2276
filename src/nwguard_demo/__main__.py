"""``python -m nwguard_demo``: the demo (as root; ``make demo`` runs it)."""

from nwguard_demo.demo import main

raise SystemExit(main())
