"""SQL over extracted shards with DuckDB: views `atoms`, `files` (and `embeddings` when
written) read the Parquet shards of an `avgeo extract` folder in place.

Snippets (`avgeo query "SQL" --data DIR`):

    -- files per status and kind
    SELECT status, kind, count(*) AS n FROM files GROUP BY ALL ORDER BY n DESC;
    -- the most frequent atoms of one engine
    SELECT name, count(*) AS n, avg(confidence) AS mean_conf FROM atoms
    WHERE engine = 'birdnet' GROUP BY name ORDER BY n DESC LIMIT 20;
    -- which engines fired per country of the truth
    SELECT f.country, a.engine, count(DISTINCT f.file) AS files FROM atoms a
    JOIN files f USING (row) GROUP BY ALL ORDER BY files DESC;
    -- GPS fixes from metadata, with their source
    SELECT file, json_extract(likelihood_json, '$.params.lat')::DOUBLE AS lat,
           json_extract(likelihood_json, '$.params.lon')::DOUBLE AS lon
    FROM atoms WHERE kind = 'metadata' AND likelihood_json IS NOT NULL;
    -- failures and why
    SELECT error_type, count(*) AS n, any_value(error) FROM files
    WHERE status <> 'ok' GROUP BY error_type;
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from avgeo.errors import BackboneMissingError, ConfigError, TableError

VIEWS = ("atoms", "files", "embeddings")


def connect(data: str | Path):
    """An in-memory DuckDB connection with one view per shard kind found under `data`."""
    try:
        import duckdb
    except ImportError as exc:
        raise BackboneMissingError("avgeo query needs the package 'duckdb'",
                                   "pip install duckdb") from exc
    data = Path(data)
    if not data.is_dir():
        raise ConfigError(f"--data {data} is not a folder",
                          "pass the folder `avgeo extract --out` wrote")
    con = duckdb.connect(":memory:")
    found = []
    for view in VIEWS:
        if any(data.glob(f"{view}-*.parquet")):
            pattern = str(data / f"{view}-*.parquet").replace("'", "''")
            con.execute(f"CREATE VIEW {view} AS SELECT * FROM read_parquet('{pattern}')")
            found.append(view)
    if "files" not in found:
        raise ConfigError(f"{data} holds no finished shards (files-*.parquet)",
                          "run `avgeo extract MANIFEST --out DIR` first (or let it finish)")
    return con


def run_query(sql: str, data: str | Path) -> tuple[list[str], list[tuple[Any, ...]]]:
    """(column names, rows) of `sql` over the shards in `data`."""
    import duckdb

    con = connect(data)
    try:
        cur = con.execute(sql)
    except duckdb.Error as exc:
        msg = " ".join(str(exc).split())[:300]
        raise TableError(f"query failed: {msg}",
                         "check the SQL; views are atoms, files (and embeddings)") from exc
    if cur.description is None:
        return [], []
    cols = [d[0] for d in cur.description]
    return cols, cur.fetchall()
