"""`python -m services.analytics [--host H] [--port P]`: run analytics alone."""

import sys

from services.cli import main

main(["serve", "--service", "analytics", *sys.argv[1:]])
