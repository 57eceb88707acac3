"""The container image, tested without a Docker engine (none runs on our machines).

What can be checked here is checked: every path the Dockerfile copies from the build context
exists and survives .dockerignore, the base image is pinned, every package is installed from a
hashed lock (the image's part of requirements/dev.lock, taken by deploy/image/lock_subset.py),
the final stage runs as a non-root user with no build tools and `mutualis serve` as its entry
point, and that entry point works from the wheel the image installs.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import json
import re
import shlex
import subprocess
import sys
import sysconfig
import tomllib
import venv
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

from mutualis_kernel.service import default_ports

from .conftest import ROOT

#: The services this distribution installs, and their default HTTP ports.
KNOWN_SERVICES = default_ports()

DOCKERFILE = (ROOT / "Dockerfile").read_text()
LOCK = ROOT / "requirements" / "dev.lock"
LOCK_SUBSET = ROOT / "deploy" / "image" / "lock_subset.py"
DEV_TOOLS_LOCK = ROOT / "deploy" / "image" / "dev-tools.lock"
DEVELOPMENT_TOOLS = ("pytest", "mypy", "ruff", "hypothesis", "schemathesis", "pip-audit")
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


def test_the_image_carries_the_seda_schemas_the_archive_reads() -> None:
    # The archive reads them from <venv>/share/mutualis/seda, never downloads them at run
    # time: the build stage installs them into the virtualenv the runtime stage copies.
    build = stages()["build"]
    runs = [rest for keyword, rest in build if keyword == "RUN"]
    assert any(
        "fetch-seda-xsd.sh" in run and "PYTHON=/opt/mutualis/bin/python" in run for run in runs
    )
    runtime_copies = [rest for keyword, rest in stages()["runtime"] if keyword == "COPY"]
    assert any("--from=build /opt/mutualis /opt/mutualis" in rest for rest in runtime_copies)


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


# -- hashed installs ------------------------------------------------------------------------
def shell_commands() -> list[tuple[str, str]]:
    """(stage, command) for every command of every RUN, `&&` chains split."""
    found = []
    for stage, steps in stages().items():
        for keyword, rest in steps:
            if keyword == "RUN":
                found += [(stage, command.strip()) for command in rest.split("&&")]
    return found


def test_every_package_the_image_installs_is_pinned_with_hashes() -> None:
    installs = [(s, c) for s, c in shell_commands() if re.search(r"\bpip install\b", c)]
    assert installs
    locks = []
    for stage, command in installs:
        words = shlex.split(command)
        if "--require-hashes" in words:
            assert "--no-deps" in words, f"{stage}: {command} (everything comes from the lock)"
            locks.append(words[words.index("-r") + 1])
            continue
        # The only other install: the project's wheel, built from the sources in this stage.
        assert words[-1] == "/wheels/mutualis-*.whl", f"{stage}: unhashed install: {command}"
        assert "--no-deps" in words
    assert "--upgrade" not in DOCKERFILE, "an upgrade fetches an unpinned version"
    assert sorted(locks) == ["/tmp/build.lock", "/tmp/dev-tools.lock", "/tmp/runtime.lock"]
    commands = [c for _, c in shell_commands()]
    for group in ("build", "runtime"):
        made = f"python deploy/image/lock_subset.py requirements/dev.lock --group {group}"
        assert f"{made} > /tmp/{group}.lock" in commands
    [wheel] = [c for c in commands if "pip wheel" in c]
    assert "--no-build-isolation" in wheel, "build isolation would fetch hatchling unhashed"
    assert wheel.startswith("/opt/build-tools/bin/pip"), "with the hashed build tools"
    assert "/opt/mutualis/bin/pip check" in commands, "the lock's subset lacks nothing"


def lock_subset(group: str) -> str:
    pyproject = str(ROOT / "pyproject.toml")
    done = subprocess.run(
        [sys.executable, str(LOCK_SUBSET), str(LOCK), "--pyproject", pyproject, "--group", group],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout


def pinned(lock_text: str) -> dict[str, str]:
    """name -> the entry's text (pin, hashes), for each package of a lock."""
    entries: dict[str, str] = {}
    current = ""
    for line in lock_text.splitlines():
        if line[:1].isalnum():
            current = re.sub(r"[-_.]+", "-", line.split("==")[0]).lower()
            entries[current] = line
        elif current and line.strip().startswith("--hash"):
            entries[current] += "\n" + line
    return entries


def runtime_closure() -> set[str]:
    """The project's dependencies and theirs, from the installed packages' metadata."""

    def name(requirement: Requirement) -> str:
        return re.sub(r"[-_.]+", "-", requirement.name).lower()

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    todo = [Requirement(r) for r in project["dependencies"]]
    extras: dict[str, set[str]] = {}
    while todo:
        requirement = todo.pop()
        known = extras.get(name(requirement))
        if known is not None and set(requirement.extras) <= known:
            continue
        wanted = extras.setdefault(name(requirement), set())
        wanted.update(requirement.extras)
        for raw in importlib.metadata.requires(requirement.name) or []:
            needed = Requirement(raw)
            environments = [{**default_environment(), "extra": e} for e in wanted or {""}]
            if needed.marker is None or any(needed.marker.evaluate(e) for e in environments):
                todo.append(needed)
    return set(extras)


def test_the_runtime_lock_is_the_dependency_closure_copied_from_the_project_lock() -> None:
    project_lock = pinned(LOCK.read_text())
    runtime = pinned(lock_subset("runtime"))
    for name, entry in runtime.items():
        assert project_lock[name] == entry, f"{name}: not the project lock's pin and hashes"
        assert "--hash=sha256:" in entry
    assert set(runtime) == runtime_closure(), "exactly what the installed metadata requires"
    for tool in DEVELOPMENT_TOOLS:
        assert tool not in runtime, f"{tool} would ship in the image"
    build = pinned(lock_subset("build"))
    assert "hatchling" in build
    assert all(project_lock[name] == entry for name, entry in build.items())


def test_the_dev_stage_tools_are_pinned_with_hashes() -> None:
    entries = pinned(DEV_TOOLS_LOCK.read_text())
    assert "watchfiles" in entries
    for name, entry in entries.items():
        assert re.search(r"==[\w.]+ ", entry.splitlines()[0]), f"{name} is not pinned"
        assert entry.count("--hash=sha256:") >= 2, f"{name}: a hash per Linux architecture"
    assert "watchfiles --filter python" in DOCKERFILE, "the tool the dev stage runs"


def test_the_lock_subset_follows_what_pulls_what_in(tmp_path: Path) -> None:
    lock = tmp_path / "dev.lock"
    lock.write_text(
        "# header\n"
        "alpha==1.0 \\\n    --hash=sha256:aa\n    # via mutualis (pyproject.toml)\n"
        "beta==2.0 \\\n    --hash=sha256:bb\n    # via\n    #   alpha\n    #   devtool\n"
        "gamma==3.0 \\\n    --hash=sha256:cc\n    # via beta\n"
        "devtool==4.0 \\\n    --hash=sha256:dd\n    # via mutualis (pyproject.toml)\n"
        "helper==5.0 \\\n    --hash=sha256:ee\n    # via devtool\n"
    )
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\nname = "x"\ndependencies = ["Alpha>=1"]\n'
        '[project.optional-dependencies]\ndev = ["devtool"]\n'
        '[build-system]\nrequires = ["gamma"]\n'
    )
    run = [sys.executable, str(LOCK_SUBSET), str(lock), "--pyproject", str(pyproject)]
    runtime = subprocess.run(run, capture_output=True, text=True, check=True).stdout
    assert list(pinned(runtime)) == ["alpha", "beta", "gamma"]
    assert "--hash=sha256:bb" in runtime
    build = subprocess.run([*run, "--group", "build"], capture_output=True, text=True, check=True)
    assert list(pinned(build.stdout)) == ["gamma"]
    pyproject.write_text('[project]\nname = "x"\ndependencies = ["absent"]\n')
    missing = subprocess.run(run, capture_output=True, text=True)
    assert missing.returncode != 0
    assert "not pinned in the lock: absent" in missing.stderr


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
