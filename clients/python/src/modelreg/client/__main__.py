"""`python -m modelreg.client models list`: the client commands without the server package."""

import sys

from modelreg.client.cli import main

sys.exit(main())
