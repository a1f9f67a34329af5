"""Comparing the backends table by table: exact row counts read on each host, and one pure
diff of per-host {database: {table: value}} maps (row counts, or [count, checksum] digests).

One comparison, so that showing the backends' difference, verifying a recovery and checking a
resync agree on what "equal" means.
"""

from hatasks import remote
from hatasks.errors import HaError, StateError

LIST_DBS = "SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn ORDER BY 1"
LIST_TABLES = (
    "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%' ORDER BY 1, 2"
)


def _key(value):
    return tuple(value) if isinstance(value, list) else value


def diff_tables(per_host, columns=("counts",), whole_database=False, table_notes=True):
    """Pure: compare {host: {database: {table: value}}} across hosts -> (rows, differences).

    A value is one item (``columns=("counts",)``) or a sequence with one item per column (e.g.
    [count, checksum] with ``("counts", "checksums")``); each row maps every column to
    {host: item or None}. A table is equal when every host has it with the same value. A
    database missing on a host is one row noted "database missing on ..." when
    ``whole_database`` or when no host has a table in it; otherwise each table of it is a row
    (noted "missing on ..." with ``table_notes``).
    """
    hosts = list(per_host)
    rows, diffs = [], []

    def add(row):
        rows.append(row)
        if not row["equal"]:
            diffs.append(row)

    for db in sorted({db for d in per_host.values() for db in d}):
        missing = [h for h in hosts if db not in per_host[h]]
        tables = sorted({t for h in hosts for t in per_host[h].get(db, {})})
        if missing and (whole_database or not tables):
            add({"database": db, "table": None, **{c: {h: None for h in hosts} for c in columns},
                 "equal": False, "note": "database missing on " + ", ".join(missing)})
            continue
        for t in tables:
            vals = {h: per_host[h].get(db, {}).get(t) for h in hosts}
            equal = None not in vals.values() and len({_key(v) for v in vals.values()}) == 1
            row = {"database": db, "table": t}
            if len(columns) == 1:
                row[columns[0]] = vals
            else:
                for i, c in enumerate(columns):
                    row[c] = {h: (v[i] if v else None) for h, v in vals.items()}
            row["equal"] = equal
            if table_notes and None in vals.values():
                row["note"] = "missing on " + ", ".join(h for h, v in vals.items() if v is None)
            add(row)
    return rows, diffs


def count_query(schema, table):
    from psycopg2 import sql  # on first use: psycopg2 costs start-up time to every command

    return sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema),
                                                        sql.Identifier(table))


def row_counts(ctx, host, port=None):
    """{database: {"schema.table": count}} for every non-template database of HOST."""
    host = remote.host(ctx, host)
    port = port or int(host.vars.get("pg_port") or 5432)
    out = {}
    dbs = [r["datname"] for r in remote.sql_rows(ctx, host, LIST_DBS, port=port)]
    for db in dbs:
        counts = {}
        with remote.pg_connect(ctx, host, port=port, dbname=db) as conn:
            with conn.cursor() as cur:
                cur.execute(LIST_TABLES)
                tables = cur.fetchall()
                for schema, table in tables:
                    cur.execute(count_query(schema, table))
                    counts[f"{schema}.{table}"] = int(cur.fetchone()[0])
        out[db] = counts
    return out


def row_count_report(ctx, cluster="db", hosts=None, ports=None):
    """Exact row counts of every table on every backend of CLUSTER, compared.

    Returns {"hosts", "tables": [...], "differences": [...], "equal": bool}. A backend that
    cannot be read raises (a comparison with a missing side proves nothing)."""
    inv = remote.inventory(ctx)
    hosts = hosts or inv.cluster(cluster).hosts
    ports = ports or {}
    results = remote.probe_many(ctx, hosts, lambda name: row_counts(ctx, name, ports.get(name)))
    bad = {n: r for n, r in results.items() if isinstance(r, HaError)}
    if bad:
        raise StateError("cannot compare: " + "; ".join(r.message for r in bad.values()))
    rows, diffs = diff_tables(results)
    return {"hosts": list(results), "tables": rows, "differences": diffs, "equal": not diffs}


def diff_digests(per_host):
    """Pure: the resync's verification, {host: {db: {table: [count, checksum]}}} compared; a
    database missing on a host is one row (its tables are not listed)."""
    return diff_tables(per_host, ("counts", "checksums"), whole_database=True, table_notes=False)
