"""Write the app's OpenAPI document to openapi/openapi.json; run it after any API change.

    python -m openapi.export            # or: python openapi/export.py
    python -m openapi.export --check    # exit 1 when the committed file is stale

Building the app needs no database: create_app only makes a (lazy) engine, and the first
connection happens in the lifespan, which is never started here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOCUMENT = HERE / "openapi.json"
EXPORT_COMMAND = "python -m openapi.export"

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(HERE.parent))


def spec() -> dict[str, object]:
    from api.app import create_app
    from api.settings import Settings

    return create_app(Settings(database_url="sqlite://")).openapi()


def render() -> str:
    """The document exactly as committed: sorted keys, indent 2, trailing newline."""
    return json.dumps(spec(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the file is out of date")
    parser.add_argument("--output", type=Path, default=DOCUMENT)
    args = parser.parse_args(argv)
    text = render()
    current = args.output.read_text(encoding="utf-8") if args.output.exists() else None
    if args.check:
        if current != text:
            print(f"{args.output} is out of date: run `{EXPORT_COMMAND}`", file=sys.stderr)
            return 1
        return 0
    if current != text:
        args.output.write_text(text, encoding="utf-8")
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
