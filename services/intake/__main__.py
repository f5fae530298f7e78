"""`python -m services.intake [--host H] [--port P]`: run intake alone."""

import sys

from services.cli import main

main(["serve", "--service", "intake", *sys.argv[1:]])
