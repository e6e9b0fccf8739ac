"""``python -m plait``: the command-line interface (see `plait.cli`)."""

from plait.cli import main

main()
