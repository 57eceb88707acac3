"""`mutualis drill` against a real `mutualis up --ha` platform: faults cost no data, no duplicate.

One platform (three NATS nodes, every service in every datacenter) serves the module: each
drill heals what it hurt, so the next one starts from a whole platform. The workload is small
(a journey every two seconds, five seconds before the fault, ten after) to keep the module
within a few minutes on two cores; the figures of longer drills are in docs/continuity.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mutualis_cli.ports import free_up_options
from mutualis_kernel.bus.errors import PublishTimeout
from mutualis_kernel.config import KernelSettings
from mutualis_kernel.http import create_app


def _cli(run_dir: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mutualis_cli.main", *args, "--run-dir", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def ha_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    run_dir = tmp_path_factory.mktemp("drills") / "run"
    try:
        started = _cli(run_dir, "up", "--ha", "--detach", *free_up_options())
        assert started.returncode == 0, started.stdout + started.stderr
        yield run_dir
    finally:
        _cli(run_dir, "down", timeout=120)


def drill(run_dir: Path, *fault: str) -> dict[str, Any]:
    report_path = run_dir.parent / f"drill{'-'.join(fault)}.json"
    done = _cli(
        run_dir,
        "drill",
        *fault,
        "--rate",
        "0.5",
        "--before",
        "5",
        "--after",
        "10",
        "--down-for",
        "3",
        "--json",
        str(report_path),
    )
    assert report_path.exists(), done.stdout + done.stderr
    report: dict[str, Any] = json.loads(report_path.read_text())
    return report


def assert_no_loss_no_duplicate(report: dict[str, Any]) -> None:
    assert report["journeys"]["completed"] > 0, report["client_visible_errors"]
    assert report["acknowledged_but_lost"] == []
    assert report["duplicates"] == {"emails": [], "records": [], "signatures": []}


@pytest.mark.slow
def test_killing_a_parapheur_instance_mid_handler_loses_and_repeats_nothing(
    ha_platform: Path,
) -> None:
    report = drill(ha_platform, "--kill-service", "parapheur")

    assert_no_loss_no_duplicate(report)
    assert report["journeys"]["failed_after_heal"] == 0, report["client_visible_errors"]


@pytest.mark.slow
def test_losing_a_whole_datacenter_loses_and_repeats_nothing(ha_platform: Path) -> None:
    report = drill(ha_platform, "--kill", "dc2")

    assert_no_loss_no_duplicate(report)
    assert report["catch_up_s"] is not None, report["lagging_streams"]


@pytest.mark.slow
def test_freezing_a_datacenter_loses_and_repeats_nothing(ha_platform: Path) -> None:
    report = drill(ha_platform, "--freeze", "dc2")

    assert_no_loss_no_duplicate(report)
    assert report["catch_up_s"] is not None, report["lagging_streams"]


@pytest.mark.slow
def test_killing_the_meta_leader_loses_and_repeats_nothing(ha_platform: Path) -> None:
    report = drill(ha_platform, "--kill-meta-leader")

    assert_no_loss_no_duplicate(report)
    assert report["catch_up_s"] is not None, report["lagging_streams"]


@pytest.mark.slow
def test_a_rolling_restart_gives_clients_no_error_and_repeats_nothing(ha_platform: Path) -> None:
    report = drill(ha_platform, "--rolling-restart")

    assert_no_loss_no_duplicate(report)
    assert report["client_visible_errors"] == []


@pytest.mark.slow
def test_a_drill_without_a_running_platform_says_how_to_start_one(tmp_path: Path) -> None:
    # Nothing runs there: the refusal comes before any fault, with a message saying why.
    done = _cli(tmp_path / "nothing", "drill", "--kill", "dc2", timeout=60)
    assert done.returncode != 0
    assert "mutualis up" in done.stdout + done.stderr


async def test_a_publish_past_its_deadline_answers_503_with_retry_after() -> None:
    app = create_app(title="t", version="0", settings=KernelSettings(dev_mode=True))

    @app.post("/v1/things")
    async def create() -> None:
        raise PublishTimeout("event not stored within 15s")

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post("/v1/things")

    assert response.status_code == 503
    assert response.headers["retry-after"].isdigit()
    assert response.json()["error"] == "unavailable"
