"""`python -m services.briefs [--host H] [--port P]`: run briefs alone."""

import sys

from services.cli import main

main(["serve", "--service", "briefs", *sys.argv[1:]])
