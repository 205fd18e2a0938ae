"""`python -m mendnet.cli`: the `mendnet` command."""

import sys

from mendnet.cli.app import main

sys.exit(main())
