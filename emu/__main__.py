"""`python -m emu`: the `arena-emu` command."""

from .tools.cli import main

raise SystemExit(main())
