"""`python -m warmwhisk_invoker_patch`: see `cli.py`."""

from .cli import main

raise SystemExit(main())
