"""The container image, tested without a Docker engine (none runs on our machines).

What can be checked here is checked: every path the Dockerfile copies from the build context
exists and survives .dockerignore, the base image is pinned, the final stage runs as a non-root
user with no build tools and `mutualis serve` as its entry point, and that entry point works
from the wheel the image installs.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from mutualis_kernel.service import KNOWN_SERVICES

from .conftest import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()
BUILD_TOOLS = ("gcc", "build-essential", "make ", "g++", "clang", "cargo", "rustc")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        found.append((keyword.upper(), rest.strip()))
    return found


def stages() -> dict[str, list[tuple[str, str]]]:
    by_stage: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for keyword, rest in instructions():
        if keyword == "FROM":
            current = rest.split(" AS ")[-1].strip() if " AS " in rest else rest
            by_stage[current] = []
        if current:
            by_stage[current].append((keyword, rest))
    return by_stage


def context_sources() -> list[str]:
    sources = []
    for keyword, rest in instructions():
        if keyword != "COPY":
            continue
        words = shlex.split(rest)
        if any(w.startswith("--from") for w in words):
            continue
        sources += [w for w in words[:-1] if not w.startswith("--")]
    return sources


def ignored(path: str) -> bool:
    """Docker's rule: the last .dockerignore pattern matching the path decides."""
    verdict = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path, pattern + "/*"):
            verdict = not negate
    return verdict


def test_every_path_the_dockerfile_copies_exists_and_is_not_ignored() -> None:
    sources = context_sources()
    assert {"pyproject.toml", "README.md", "libs/", "services/"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not ignored(source.rstrip("/")), f"{source} is excluded by .dockerignore"
        if source.endswith("/"):
            some_file = next(p for p in (ROOT / source).rglob("*.py"))
            assert not ignored(str(some_file.relative_to(ROOT))), some_file


def test_the_build_context_leaves_out_local_state() -> None:
    for path in (
        ".venv/bin/python",
        ".mutualis/state.json",
        ".tools/bin/helm",
        ".git/HEAD",
        "tests/conftest.py",
        "services/identity/__pycache__/x.pyc",
    ):
        assert ignored(path), path


def test_the_base_image_is_pinned_to_an_exact_slim_python() -> None:
    [default] = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE, re.MULTILINE)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", default)
    for stage, steps in stages().items():
        base = steps[0][1].split()[0]
        assert base in ("${PYTHON_IMAGE}", "runtime"), (stage, base)


def test_the_final_stage_runs_mutualis_serve_as_a_non_root_user_without_build_tools() -> None:
    runtime = stages()["runtime"]
    users = [rest for keyword, rest in runtime if keyword == "USER"]
    assert users
    assert users[-1].split(":")[0] not in ("0", "root")
    assert users[-1].split(":")[0] == "10001", "the chart's runAsUser"
    [entrypoint] = [rest for keyword, rest in runtime if keyword == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["mutualis", "serve"]
    commands = " ".join(rest for keyword, rest in runtime if keyword == "RUN")
    assert "apt-get install" not in commands
    assert not any(tool in commands for tool in BUILD_TOOLS)
    copies_from = [rest for keyword, rest in runtime if keyword == "COPY"]
    assert all("--from=build" in rest for rest in copies_from), "only the built virtualenv"


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel the image installs, in a fresh virtualenv.

    Its dependencies come from the project's own virtualenv through a .pth line (no index
    needed); a plain path line never runs the editable install's hook, so `mutualis` and the
    kernel are imported from the wheel.
    """
    work = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            str(ROOT),
            "-w",
            str(work / "dist"),
        ],
        check=True,
        timeout=300,
    )
    [wheel] = (work / "dist").glob("mutualis-*.whl")
    env_dir = work / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(purelib) / "project_dependencies.pth").write_text(sysconfig.get_paths()["purelib"])
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "-q",
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    return env_dir


def test_mutualis_serve_works_from_the_installed_wheel(installed_wheel: Path) -> None:
    done = subprocess.run(
        [str(installed_wheel / "bin" / "mutualis"), "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Run one service" in done.stdout
    where = subprocess.run(
        [
            str(installed_wheel / "bin" / "python"),
            "-c",
            "import mutualis_cli, mutualis_kernel; print(mutualis_cli.__file__)",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert str(installed_wheel) in where, "imported from the wheel, not the source tree"


def test_an_unknown_service_is_refused_with_a_usage_error(installed_wheel: Path) -> None:
    done = subprocess.run(
        [str(installed_wheel / "bin" / "mutualis"), "serve", "no-such-service"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "unknown service" in done.stderr


def test_the_wheel_ships_the_services_the_chart_deploys(installed_wheel: Path) -> None:
    listed = subprocess.run(
        [
            str(installed_wheel / "bin" / "python"),
            "-c",
            "from mutualis_cli.serve import installed_services; print(installed_services())",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    ).stdout
    missing = [name for name in KNOWN_SERVICES if name not in listed]
    assert not missing, f"not packaged in the wheel: {missing} (pyproject's wheel packages)"
