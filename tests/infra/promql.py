"""Reading the PromQL of the rules and dashboards: expressions, and the metric names they use.

There is no PromQL parser on PyPI worth the name and promtool has no query-check command, so
syntax is checked by promtool on a rule file made of the expressions (`as_rule_file`), and
names are found by removing what is not a metric name (strings, label matchers, grouping
clauses, durations, functions and keywords).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "infra" / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
DASHBOARDS = sorted((ROOT / "infra" / "grafana" / "dashboards").glob("*.json"))
RUNBOOKS = ROOT / "docs" / "runbooks"

#: Grafana's variables, replaced by values Prometheus accepts.
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "$datacenter": "dc1",
}
KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "offset",
    "bool",
    "inf",
    "nan",
}
#: Series Prometheus itself writes.
BUILTIN_SERIES = {"up", "ALERTS", "ALERTS_FOR_STATE", "scrape_duration_seconds"}


def rules() -> Iterator[dict[str, Any]]:
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            yield from group["rules"]


def recorded_names() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def dashboard_expressions() -> Iterator[tuple[str, str, str]]:
    """(dashboard file, panel title, expression) of every query and templating query."""
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                yield path.name, panel["title"], target["expr"]
        for variable in board["templating"]["list"]:
            match = re.fullmatch(r"label_values\((.+),\s*\w+\)", variable.get("definition", ""))
            if match:
                yield path.name, f"variable {variable['name']}", match.group(1)


def concrete(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def metric_names(expr: str) -> set[str]:
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\boffset\s+\w+", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?", text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in KEYWORDS or re.fullmatch(r"\d+[smhdwy]", name):
            continue
        names.add(name)
    return names


def as_rule_file(expressions: list[str]) -> str:
    """The expressions as recording rules: `promtool check rules` then parses each one."""
    rules_ = [
        {"record": f"dashboard:expression_{i}:check", "expr": concrete(expr)}
        for i, expr in enumerate(expressions)
    ]
    return yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules_}]})


def exporter_names() -> set[str]:
    lines = (PROMETHEUS / "exporter-metrics.txt").read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}
