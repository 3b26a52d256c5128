"""DuckDB as an independent peer for the `supervision` bench (issue F).

Run by `cargo bench -p paotui-benches --bench supervision`, which installs duckdb (pinned)
into a virtualenv under $CARGO_TARGET_DIR/paotui-bench/ and starts this script with a JSON
spec: the Parquet files of each table and the views. The script then serves one query at
a time, so that the bench can take DuckDB's runs in turn with DataFusion's, run by run, and
a drift of the machine during the run falls on both engines alike. It first prints one
JSON line, {"duckdb": version}; then, for each line {"sql": ...} read from stdin, one line
{"ms": wall-clock milliseconds of execute + fetch, "rows": the answer (dates as
YYYY-MM-DD)} or {"error": message}.

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
    print(json.dumps({"duckdb": duckdb.__version__}), flush=True)
    for line in sys.stdin:
        sql = json.loads(line)["sql"]
        try:
            t = time.perf_counter()
            rows = con.execute(sql).fetchall()
            ms = (time.perf_counter() - t) * 1000.0
            answer = {"ms": ms, "rows": [[value(v) for v in r] for r in rows]}
        except duckdb.Error as e:
            answer = {"error": str(e)}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
