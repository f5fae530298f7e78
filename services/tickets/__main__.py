"""`python -m services.tickets [--host H] [--port P]`: run tickets alone."""

import sys

from services.cli import main

main(["serve", "--service", "tickets", *sys.argv[1:]])
