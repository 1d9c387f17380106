import sys

from modelreg_server.cli import main

sys.exit(main())
