"""`python -m streams.cli`: the `retention` command (README "CLI")."""

import sys

from streams.cli import main

sys.exit(main())
