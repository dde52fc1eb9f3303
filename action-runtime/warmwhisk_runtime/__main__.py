"""`python -m warmwhisk_runtime [--host H] [--port P] [--metrics-port M]`: serve in the foreground."""

from __future__ import annotations

import os
import sys

from .config import load_config
from .server import RuntimeServer


def main() -> None:
    config = load_config(sys.argv[1:], os.environ)
    RuntimeServer(config).run()


if __name__ == "__main__":
    main()
