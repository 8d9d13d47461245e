"""`python -m selfhost [--app-root DIR] [--state-dir DIR] [--port N]`: run a Functions app locally.

Defaults: the app root is the current folder, the state folder `<app-root>/.selfhost`, the port
local.settings.json `Host.LocalHttpPort`, else 7071 (as Core Tools: `--port` wins over both).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from selfhost.process import main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m selfhost", description=__doc__.splitlines()[0])
    parser.add_argument("--app-root", type=Path, default=Path.cwd(), help="folder holding function_app.py")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="keys, durable store, lock (default <app-root>/.selfhost)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help="HTTP port on 127.0.0.1 (default local.settings.json Host.LocalHttpPort, else 7071)",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    sys.exit(main(args.app_root, args.state_dir, args.port))
