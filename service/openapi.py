"""Write (or check) the committed OpenAPI document: ``python -m peng4nn_service.openapi [--check]``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

OPENAPI_PATH = Path(__file__).resolve().parents[1] / "openapi" / "openapi.json"


def render() -> str:
    """The app's OpenAPI document as stable, reviewable JSON text."""
    from peng4nn_service.app import create_app
    from peng4nn_store.settings import Settings

    return json.dumps(create_app(Settings()).openapi(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m peng4nn_service.openapi", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed file differs")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = OPENAPI_PATH.read_text() if OPENAPI_PATH.exists() else ""
        if current != text:
            print(f"{OPENAPI_PATH} is out of date: run python -m peng4nn_service.openapi", file=sys.stderr)
            return 1
        return 0
    OPENAPI_PATH.parent.mkdir(parents=True, exist_ok=True)
    OPENAPI_PATH.write_text(text)
    print(f"wrote {OPENAPI_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
