"""`python -m mutualis_kernel.contract --write|--check`: regenerate or verify the contract files.

`make` and CI call `--check`; a developer who changed an event runs `--write` and commits the
result. Exit status: 0 when done or up to date, 1 when something must be fixed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mutualis_kernel.contract.documents import (
    ContractError,
    check_contract,
    write_contract,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mutualis_kernel.contract",
        description="Generate or check docs/asyncapi.yaml, docs/event-schemas.json and the "
        "event table of docs/events.md from the code.",
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="regenerate the contract files")
    mode.add_argument("--check", action="store_true", help="fail if they are stale or broken")
    parser.add_argument(
        "--docs-dir", type=Path, default=Path("docs"), help="where the files live (docs)"
    )
    parser.add_argument(
        "--allow-breaking",
        action="store_true",
        help="with --write: record a breaking change anyway (only for a type never released)",
    )
    args = parser.parse_args(argv)
    try:
        if args.write:
            changed = write_contract(args.docs_dir, allow_breaking=args.allow_breaking)
            for path in changed:
                print(f"wrote {path}")
            if not changed:
                print("contract files already up to date")
            return 0
        problems = check_contract(args.docs_dir)
    except ContractError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if not problems:
        print("event contract up to date, no breaking change")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
