"""A small random-search NAS against a running ``peng4nn serve``: see peng4nn/random_search.py.

    peng4nn serve                       # terminal 1
    python examples/random_search.py    # terminal 2 (zero configuration)
"""

import sys

from peng4nn.random_search import main

if __name__ == "__main__":
    sys.exit(main())
