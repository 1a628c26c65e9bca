"""``python3 -m ecgfm_suite COMMAND``: sets up ``.venv`` on first use, then runs the CLI inside it."""

import sys

from ._bootstrap import main

if __name__ == "__main__":  # a spawned worker process imports this module as __mp_main__
    sys.exit(main())
