"""`python -m peng4nn` runs the same CLI as the `peng4nn` command."""

import sys

from peng4nn.cli import main

sys.exit(main())
