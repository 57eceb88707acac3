"""The OpenTelemetry Collector configuration: complete pipelines and the sampling we promise.

`otelcol-contrib` is not installable here (no Debian package, no PyPI wheel), so the
structure is checked the way the collector would at start-up: every component a pipeline
names is defined, and every defined one is used. When the binary is on PATH its own
`validate` command runs too.
"""

import shutil
import subprocess
from typing import Any

import pytest
import yaml

from . import promql

CONFIG = promql.ROOT / "infra" / "otel-collector" / "config.yaml"


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    return loaded


def test_every_component_a_pipeline_names_is_defined_and_every_one_is_used(
    config: dict[str, Any],
) -> None:
    used: dict[str, set[str]] = {"receivers": set(), "processors": set(), "exporters": set()}
    for pipeline in config["service"]["pipelines"].values():
        for kind, names in used.items():
            names.update(pipeline.get(kind, []))

    for kind, names in used.items():
        assert names == set(config[kind]), kind
    assert set(config["service"]["extensions"]) == set(config["extensions"])


def test_memory_limiter_comes_first_and_batch_last_in_every_pipeline(
    config: dict[str, Any],
) -> None:
    for pipeline in config["service"]["pipelines"].values():
        assert pipeline["processors"][0] == "memory_limiter"
        assert pipeline["processors"][-1] == "batch"


def test_otlp_comes_in_over_grpc_and_http(config: dict[str, Any]) -> None:
    assert set(config["receivers"]["otlp"]["protocols"]) == {"grpc", "http"}


def test_traces_keep_errors_slow_journeys_and_a_fraction_of_the_rest(
    config: dict[str, Any],
) -> None:
    policies = {p["type"]: p for p in config["processors"]["tail_sampling"]["policies"]}

    assert policies["status_code"]["status_code"]["status_codes"] == ["ERROR"]
    assert policies["latency"]["latency"]["threshold_ms"] == 2000
    assert 0 < policies["probabilistic"]["probabilistic"]["sampling_percentage"] < 100
    assert "tail_sampling" in config["service"]["pipelines"]["traces"]["processors"]


def test_traces_go_to_tempo_and_jaeger_and_metrics_to_prometheus(
    config: dict[str, Any],
) -> None:
    pipelines = config["service"]["pipelines"]

    assert set(pipelines["traces"]["exporters"]) == {"otlp/tempo", "otlp/jaeger"}
    assert pipelines["metrics"]["exporters"] == ["prometheus"]


@pytest.mark.skipif(shutil.which("otelcol-contrib") is None, reason="otelcol-contrib not installed")
def test_the_collector_itself_accepts_the_configuration() -> None:
    result = subprocess.run(
        ["otelcol-contrib", "validate", f"--config={CONFIG}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
