"""`python -m harness.cli ARGS`: the `spacetime` command."""

import sys

from harness.cli.main import main

sys.exit(main())
