"""Alert and recording rules: valid for Prometheus, unit-tested, each alert with its runbook."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from . import promql

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not installed (Debian package `prometheus`: apt-get install prometheus)",
)


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


@needs_promtool
def test_the_rule_files_are_valid() -> None:
    result = promtool("check", "rules", *promql.RULE_FILES)

    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_the_scrape_configuration_is_valid() -> None:
    result = promtool("check", "config", "--syntax-only", promql.PROMETHEUS / "prometheus.yml")

    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_the_important_alerts_fire_when_they_should_and_only_then() -> None:
    result = promtool("test", "rules", *sorted((promql.PROMETHEUS / "tests").glob("*.yml")))

    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_severity_a_summary_and_a_runbook_that_exists() -> None:
    missing = []
    for rule in promql.rules():
        if "alert" not in rule:
            continue
        annotations = rule.get("annotations", {})
        url = annotations.get("runbook_url", "")
        page = re.search(r"/docs/runbooks/([A-Za-z]+)\.md$", url)
        if not (
            rule.get("labels", {}).get("severity") in {"page", "ticket"}
            and annotations.get("summary")
            and page
            and page.group(1) == rule["alert"]
            and (promql.RUNBOOKS / f"{rule['alert']}.md").is_file()
        ):
            missing.append(rule["alert"])

    assert missing == []


def test_every_runbook_belongs_to_an_alert() -> None:
    alerts = {rule["alert"] for rule in promql.rules() if "alert" in rule}
    pages = {path.stem for path in promql.RUNBOOKS.glob("*.md")} - {"README"}

    assert pages == alerts
