"""``python3 -m ecgfm_suite COMMAND``: sets up ``.venv`` on first use, then runs the CLI inside it."""

import sys

from ._bootstrap import main

sys.exit(main())
