"""`mutualis dev`: helpers for development, starting with the demo accounts identity seeds.

`mutualis dev credentials [--json]` prints what `identity.devseed.credentials()` lists (no
NATS, no running service needed): every demo agent, citizen and client with its secrets.
These secrets are public on purpose and only exist when identity runs in dev mode.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Development helpers (demo accounts and the like).", no_args_is_help=True)


@app.callback()
def dev() -> None:
    """Development helpers (a group even with one command, so more can join it)."""


@app.command()
def credentials(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a machine-readable document.")
    ] = False,
) -> None:
    """Print the demo accounts and clients seeded by identity in dev mode."""
    from identity.devseed import DEMO_CLIENT_ID, DEMO_REDIRECT_URI
    from identity.devseed import credentials as demo_credentials

    rows = demo_credentials()
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    console = Console()
    users = Table(title="Comptes de démonstration (mode dev uniquement)")
    for column in ("identifiant", "type", "collectivité", "rôles", "mot de passe", "TOTP"):
        users.add_column(column)
    for row in rows:
        if row["type"] == "user":
            users.add_row(
                row["username"],
                row["kind"],
                row["tenant"],
                ", ".join(row["roles"]) or "-",
                row["password"],
                row["totp_secret"] or "-",
            )
    clients = Table(title="Clients OAuth de démonstration")
    for column in ("client_id", "type", "grants", "secret", "redirect_uris"):
        clients.add_column(column)
    for row in rows:
        if row["type"] == "client":
            clients.add_row(
                row["client_id"],
                row["client_type"],
                " ".join(row["grant_types"]),
                row["client_secret"] or "-",
                " ".join(row["redirect_uris"]) or "-",
            )
    console.print(users)
    console.print(clients)
    console.print(
        f"Connexion : client public [bold]{DEMO_CLIENT_ID}[/bold] (PKCE S256), "
        f"retour sur {DEMO_REDIRECT_URI} ; les signataires ont un second facteur TOTP."
    )
