"""Entry point for `python -m gxnpuc`."""
from gxnpuc.cli import main

raise SystemExit(main())
