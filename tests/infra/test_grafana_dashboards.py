"""Grafana dashboards: generated from their source, every query parses, provisioning is sane."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from . import promql

GRAFANA = promql.ROOT / "infra" / "grafana"
EXPECTED = {
    "platform-overview",
    "nats-jetstream",
    "continuity",
    "service-identity",
    "service-parapheur",
    "service-archive",
    "service-notifications",
}


def test_there_is_an_overview_a_nats_a_continuity_and_one_dashboard_per_service() -> None:
    assert {path.stem for path in promql.DASHBOARDS} == EXPECTED


def test_the_committed_dashboards_are_what_the_generator_writes(tmp_path: Path) -> None:
    generator = GRAFANA / "build_dashboards.py"
    script = (
        "import sys, runpy, pathlib; "
        f"module = runpy.run_path({str(generator)!r}, run_name='build'); "
        f"module['OUT'] = pathlib.Path({str(tmp_path)!r}); "
        "module['main'].__globals__['OUT'] = module['OUT']; module['main']()"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)

    for path in promql.DASHBOARDS:
        assert json.loads((tmp_path / path.name).read_text()) == json.loads(path.read_text()), (
            f"{path.name} is stale: run infra/grafana/build_dashboards.py"
        )


def test_panel_ids_are_unique_and_every_query_targets_the_prometheus_variable() -> None:
    for path in promql.DASHBOARDS:
        board = json.loads(path.read_text())
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)), path.name
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                assert target["datasource"]["uid"] == "${datasource}", (path.name, panel["title"])


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    expressions = [expr for _, _, expr in promql.dashboard_expressions()]
    rule_file = tmp_path / "dashboards.yml"
    rule_file.write_text(promql.as_rule_file(expressions))

    result = subprocess.run(
        ["promtool", "check", "rules", str(rule_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_provisioning_points_at_the_dashboards_and_prometheus() -> None:
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/mutualis.yaml").read_text())
    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/mutualis.yaml").read_text())

    assert provider["providers"][0]["type"] == "file"
    assert {source["type"] for source in sources["datasources"]} >= {"prometheus", "tempo"}
