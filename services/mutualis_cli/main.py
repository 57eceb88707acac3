"""Entry point of the `mutualis` command."""

import typer

app = typer.Typer(help="Mutualis: run and operate the platform.", no_args_is_help=True)


@app.command()
def version() -> None:
    """Print the version."""
    from mutualis_kernel import __version__

    typer.echo(__version__)
