"""The part of the project's hashed lock that the image needs, copied line for line.

`requirements/dev.lock` (uv pip compile --generate-hashes, `make lock`) pins every package the
project and its development tools use. The image must not carry pytest, mypy or ruff, yet must
install nothing that the lock does not pin and hash. This script keeps, verbatim (version and
every hash), the lock entries that a group of roots needs:

- `runtime`: pyproject's [project].dependencies, and everything the lock says they pull in;
- `build`: pyproject's [build-system].requires (the wheel is built without build isolation).

"What pulls what in" is read from the lock's own `# via` annotations: an entry belongs to the
group when it is a root or when a package of the group pulls it in. It may keep a few more
packages than strictly needed (one pulled in only by an extra a development tool asks for),
never fewer; the image build runs `pip check` afterwards.

Standard library only: it runs in the image's build stage before anything is installed.
Usage: python lock_subset.py requirements/dev.lock --pyproject pyproject.toml --group runtime
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)")


def normalise(name: str) -> str:
    """PEP 503: case, dots, underscores and dashes do not matter."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = _NAME.match(requirement.strip())
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return normalise(match.group(1))


@dataclass
class Entry:
    name: str
    #: The entry's lines as written in the lock: the pin and its hashes, then `# via`.
    lines: list[str] = field(default_factory=list)
    pulled_in_by: set[str] = field(default_factory=set)


def parse_lock(text: str) -> dict[str, Entry]:
    entries: dict[str, Entry] = {}
    current: Entry | None = None
    in_via = False
    for line in text.splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            current = Entry(requirement_name(line), [line])
            entries[current.name] = current
            in_via = False
            continue
        if current is None:
            continue  # the header
        current.lines.append(line)
        comment = line.strip().removeprefix("#").strip()
        if comment.startswith("via"):
            rest = comment.removeprefix("via").strip()
            in_via = not rest
            if rest:
                current.pulled_in_by.add(rest)
        elif in_via and line.strip().startswith("#"):
            current.pulled_in_by.add(comment)
        else:
            in_via = False
    for entry in entries.values():
        # "mutualis (pyproject.toml)", "-r requirements.in": not packages of the lock.
        entry.pulled_in_by = {
            normalise(who) for who in entry.pulled_in_by if " " not in who and who[0] != "-"
        }
    return entries


def roots(pyproject: dict[str, object], group: str) -> set[str]:
    if group == "runtime":
        project = pyproject["project"]
        assert isinstance(project, dict)
        requirements = project.get("dependencies", [])
    elif group == "build":
        build_system = pyproject["build-system"]
        assert isinstance(build_system, dict)
        requirements = build_system.get("requires", [])
    else:
        raise ValueError(f"unknown group {group!r}")
    assert isinstance(requirements, list)
    return {requirement_name(str(r)) for r in requirements}


def closure(entries: dict[str, Entry], wanted: set[str]) -> list[Entry]:
    """The roots and everything they pull in, in the lock's order."""
    missing = sorted(wanted - entries.keys())
    if missing:
        raise SystemExit(f"not pinned in the lock: {', '.join(missing)} (run `make lock`)")
    kept = set(wanted)
    grew = True
    while grew:
        grew = False
        for entry in entries.values():
            if entry.name not in kept and entry.pulled_in_by & kept:
                kept.add(entry.name)
                grew = True
    return [entry for entry in entries.values() if entry.name in kept]


def subset(lock_text: str, pyproject: dict[str, object], group: str) -> str:
    entries = closure(parse_lock(lock_text), roots(pyproject, group))
    header = f"# The {group} part of the project's lock, written by deploy/image/lock_subset.py.\n"
    return header + "".join("\n".join(e.lines) + "\n" for e in entries)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lock", type=Path)
    parser.add_argument("--pyproject", type=Path, default=Path("pyproject.toml"))
    parser.add_argument("--group", choices=("runtime", "build"), default="runtime")
    args = parser.parse_args(argv)
    pyproject = tomllib.loads(args.pyproject.read_text())
    sys.stdout.write(subset(args.lock.read_text(), pyproject, args.group))


if __name__ == "__main__":
    main()
