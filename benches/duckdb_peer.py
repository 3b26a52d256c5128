"""DuckDB as an independent peer for the `supervision` bench (issue F).

Run by `cargo bench -p paotui-benches --bench supervision`, which installs duckdb (pinned)
into a virtualenv under $CARGO_TARGET_DIR/paotui-bench/ and calls this script with a JSON
spec: the Parquet files of each table, the views, the queries and how many timed runs.
It prints one JSON document: per query, the wall-clock milliseconds of each timed run and
the rows of the answer (dates as YYYY-MM-DD), which the bench compares with DataFusion's.

The query text is the gateway's own, unchanged: the only shim is a macro for DataFusion's
`to_timestamp_micros`, which DuckDB spells `make_timestamp`.
"""

import datetime
import decimal
import json
import sys
import time

import duckdb


def value(v):
    if isinstance(v, (datetime.date, datetime.datetime)):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return float(v)
    return v


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        spec = json.load(f)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("CREATE MACRO to_timestamp_micros(x) AS make_timestamp(x)::TIMESTAMPTZ")
    for name, table in spec["tables"].items():
        if table["hive"]:
            src = f"read_parquet('{table['glob']}', hive_partitioning = true)"
            con.execute(f"CREATE VIEW {name} AS SELECT * EXCLUDE (day) FROM {src}")
        else:
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{table['glob']}')")
    for name, sql in spec["views"]:
        con.execute(f"CREATE VIEW {name} AS {sql}")
    out = []
    for name, sql in spec["queries"]:
        rows = con.execute(sql).fetchall()  # warm-up; its answer is the one compared
        ms = []
        for _ in range(spec["runs"]):
            t = time.perf_counter()
            con.execute(sql).fetchall()
            ms.append((time.perf_counter() - t) * 1000.0)
        out.append(
            {
                "name": name,
                "ms": ms,
                "rows": [[value(v) for v in r] for r in rows],
            }
        )
    json.dump({"duckdb": duckdb.__version__, "queries": out}, sys.stdout)


if __name__ == "__main__":
    main()
