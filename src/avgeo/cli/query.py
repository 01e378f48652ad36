"""`avgeo query "SQL" --data DIR`: DuckDB SQL over extracted shards (views atoms, files)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from avgeo.cli.app import app


@app.command("query")
def query_cmd(
    sql: str = typer.Argument(..., help="SQL over the views atoms, files (and embeddings)."),
    data: Path = typer.Option(..., "--data", help="Folder written by `avgeo extract`."),
    json_out: bool = typer.Option(False, "--json", help="One JSON object per row."),
    limit: int = typer.Option(1000, "--max-rows", help="Rows to print at most (table mode)."),
) -> None:
    """Query extracted atoms with SQL (see `avgeo.data.query` for snippets)."""
    from avgeo.data.extract import json_default
    from avgeo.data.query import run_query

    cols, rows = run_query(sql, data)
    if json_out:
        for r in rows:
            print(json.dumps(dict(zip(cols, r, strict=True)), default=json_default))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(*cols, show_lines=False)
    for r in rows[:limit]:
        table.add_row(*["" if v is None else str(v) for v in r])
    console = Console()
    console.print(table)
    if len(rows) > limit:
        console.print(f"… {len(rows) - limit} more rows (use --json for all)")
