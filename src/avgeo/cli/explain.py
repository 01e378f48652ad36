"""`avgeo explain FILE`: the rationale and the exact counterfactuals for one file."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from avgeo.cli.app import app


@app.command("explain")
def explain_cmd(
    file: Path = typer.Argument(..., help="A media file."),
    no_metadata: bool = typer.Option(False, "--no-metadata"),
    engines: str = typer.Option("all", "--engines"),
) -> None:
    """Why this answer: evidence ranked by contribution, and what each piece changed."""
    from avgeo.pipeline import locate

    pred = locate(file, engines=engines, use_metadata=not no_metadata, explain=True)
    con = Console()
    con.print(f"[bold]{pred.file}[/bold]: {pred.lat:.5f}, {pred.lon:.5f}")
    if pred.chain:
        con.print("chain: " + " → ".join(f"{c.name} ({c.probability:.0%})" for c in pred.chain))
    con.print("[bold]rationale[/bold]")
    for s in pred.rationale:
        con.print(f" • {s}", highlight=False)
    ranked = sorted([a for a in pred.atoms if a.contribution is not None],
                    key=lambda a: -abs(a.contribution or 0.0))
    if ranked:
        con.print("[bold]atoms by contribution[/bold] (log-odds, chosen country vs runner-up)")
        seen = set()
        for a in ranked:
            key = (a.engine, a.name)
            if key in seen:
                continue
            seen.add(key)
            span = (f" [{a.start_s:.1f}–{a.end_s:.1f} s]" if a.start_s is not None
                    and a.end_s is not None else "")
            con.print(f" {a.contribution:+7.2f}  {a.engine:8s} {a.evidence}{span}",
                      highlight=False)
    con.print("[bold]counterfactuals[/bold] (the answer recomputed without each atom)")
    if not pred.counterfactuals:
        con.print(" none: no geographic evidence to remove")
    for cf in pred.counterfactuals:
        con.print(f" without {cf.evidence!r}: {cf.country or 'no country'} "
                  f"{cf.country_probability:.0%} at {cf.lat:.2f}, {cf.lon:.2f} "
                  f"(moves {cf.moved_km:,.0f} km)", highlight=False)
