"""`python -m services`: the whole platform in one process; see `--help` for the other commands."""

from services.cli import main

main()
