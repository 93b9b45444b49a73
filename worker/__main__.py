"""``python -m worker``: the same as ``peng4nn worker`` (for containers and process managers)."""

from __future__ import annotations

import sys

from peng4nn.cli import main

if __name__ == "__main__":
    sys.exit(main(["worker", *sys.argv[1:]]))
