"""`python -m bench [name ...]`: run benchmarks and write bench/results/<name>.json."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
#: Every benchmark module exposes `async def run(quick: bool) -> dict` returning its figures.
BENCHMARKS = ("kernel", "transport", "identity", "parapheur", "archive", "notifications", "e2e")


def available() -> list[str]:
    found = []
    for name in BENCHMARKS:
        if (Path(__file__).parent / f"{name}.py").exists():
            found.append(name)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "names", nargs="*", help=f"benchmarks to run (default: all of {available()})"
    )
    parser.add_argument("--quick", action="store_true", help="smaller workloads, for a smoke run")
    args = parser.parse_args()
    names = args.names or available()
    unknown = [n for n in names if n not in available()]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; available: {available()}", file=sys.stderr)
        return 2
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        print(f"== bench {name}", flush=True)
        figures: dict[str, Any] = asyncio.run(module.run(quick=args.quick))
        result = {
            "benchmark": name,
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {
                "python": platform.python_version(),
                "cpus": __import__("os").cpu_count(),
                "platform": platform.platform(),
            },
            "quick": args.quick,
            **figures,
        }
        out = RESULTS / f"{name}.json"
        out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        print(json.dumps(figures, indent=2, ensure_ascii=False))
        print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
