"""`mutualis dev credentials`: the demo accounts, as a table or as JSON."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from identity.devseed import DEMO_PASSWORD, credentials
from mutualis_cli.dev import app

runner = CliRunner()


def test_credentials_as_json_are_exactly_what_identity_seeds() -> None:
    result = runner.invoke(app, ["credentials", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == credentials()


def test_credentials_as_a_table_show_agents_citizens_and_clients() -> None:
    result = runner.invoke(app, ["credentials"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    for expected in ("signataire.bordeaux", "sre.metropole", "camille.martin", DEMO_PASSWORD):
        assert expected in result.output
    assert "svc-parapheur" in result.output
