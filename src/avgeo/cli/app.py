"""The typer application object that every `avgeo` subcommand registers on."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="avgeo",
    help="Where on Earth was this photo, sound or video captured, and why.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

train_app = typer.Typer(help="Train the learned parts (fusion weights, SAE, flow, reasoner).",
                        no_args_is_help=True)
app.add_typer(train_app, name="train")


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    """avgeo: audiovisual geolocation with explanations."""
