"""Command-line options shared by several commands, so each reads and documents them alike."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

RunDir = Annotated[
    Path,
    typer.Option(
        "--run-dir",
        envvar="MUTUALIS_RUN_DIR",
        help="Where NATS data, logs and state.json live (kept between runs).",
    ),
]
NatsUrls = Annotated[
    list[str] | None,
    typer.Option(
        "--nats-url",
        help="NATS server URL (repeatable); default: the servers listed in <run-dir>/state.json.",
    ),
]
JsonOutput = Annotated[bool, typer.Option("--json", help="Print a machine-readable document.")]
