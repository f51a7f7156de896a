"""``python -m pytest_modelgate merge SHARD_DIR... --out DIR``: one verdict from CI shards."""

from __future__ import annotations

import sys

from .merge import main

if __name__ == "__main__":
    sys.exit(main())
