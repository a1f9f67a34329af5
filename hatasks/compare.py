"""Comparing the backends table by table: exact row counts read on each host, and one pure
diff of per-host {database: {table: value}} maps (row counts, or [count, checksum] digests).

One comparison, so that showing the backends' difference, verifying a recovery and checking a
resync agree on what "equal" means.
"""

import re

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


def table_total(ctx, host, port):
    """How many tables every database of HOST holds (what a digest comparison will read)."""
    h = remote.host(ctx, host)
    total = 0
    for db in [r["datname"] for r in remote.sql_rows(ctx, h, LIST_DBS, port=port)]:
        with remote.pg_connect(ctx, h, port=port, dbname=db) as conn:
            with conn.cursor() as cur:
                cur.execute(LIST_TABLES)
                total += len(cur.fetchall())
    return total


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


# --------------------------------------------------------------------------- the WAL since a position

#: records that change no row anyone can read: checkpoints, xid/lock snapshots, timeline ends,
#: hint-bit page images, VACUUM's pruning, freezing and visibility-map bits, clog pages
HARMLESS = {
    "XLOG": {"CHECKPOINT_ONLINE", "CHECKPOINT_SHUTDOWN", "END_OF_RECOVERY", "NEXTOID", "SWITCH",
             "FPI_FOR_HINT", "BACKUP_END", "PARAMETER_CHANGE", "RESTORE_POINT",
             "OVERWRITE_CONTRECORD"},
    "Standby": {"RUNNING_XACTS", "LOCK", "INVALIDATIONS"},
    "Heap2": {"PRUNE", "VACUUM", "VISIBLE", "FREEZE_PAGE"},
    "Btree": {"VACUUM", "DELETE", "MARK_PAGE_HALFDEAD", "UNLINK_PAGE", "UNLINK_PAGE_META",
              "REUSE_PAGE", "META_CLEANUP"},
    "CLOG": {"ZEROPAGE", "TRUNCATE"},
}
#: the catalogs whose rows maintenance writes, by their relfilenode as initdb makes it:
#: pg_statistic (2619) and its index (2696), ANALYZE's figures; pg_class (1259) and
#: pg_database (1262), updated in place by VACUUM and ANALYZE (relpages, reltuples, frozen
#: xids). Only these: a write to any other catalog is a schema, role or function change (a
#: rename, a GRANT, a CREATE VIEW leave no user-table record) that a rebuild would undo, so
#: it "may write" and the tables are scanned. A catalog rewritten by VACUUM FULL has a new
#: relfilenode and so counts as "may write" too (the safe side).
STATS_WRITES = {"Heap": ({"INSERT", "UPDATE", "HOT_UPDATE", "DELETE", "LOCK", "INSERT+INIT",
                          "UPDATE+INIT", "HOT_UPDATE+INIT"}, {"2619"}),
                "Btree": ({"INSERT_LEAF", "INSERT_UPPER", "INSERT_META", "SPLIT_L", "SPLIT_R",
                           "NEWROOT", "INSERT_POST", "DEDUP"}, {"2696"})}
INPLACE_STATS = {"1259", "1262"}


def stats_write(rmgr, kind, rels):
    """Pure: whether one record is maintenance's write of statistics (see STATS_WRITES)."""
    if not rels:
        return False
    if rmgr == "Heap" and kind == "INPLACE":
        return all(r in INPLACE_STATS for r in rels)
    kinds, allowed = STATS_WRITES.get(rmgr, ((), ()))
    return kind in kinds and all(r in allowed for r in rels)


def wal_writes(text):
    """Pure: pg_waldump's lines -> None when no record among them can carry a committed write
    to a user table, else the first record that may (one line). Strict: an unknown record,
    a row change outside the catalogs, a commit of a transaction that wrote nothing the range
    shows (a write to an unlogged table leaves only its commit), anything else is a "may"."""
    catalog_xids = set()
    seen = 0
    for line in text.splitlines():
        if not line.startswith("rmgr: "):
            continue
        seen += 1
        rmgr = line[6:].split(None, 1)[0]
        tx = line.split(" tx:", 1)[1].split(",", 1)[0].strip() if " tx:" in line else "?"
        desc = line.split("desc: ", 1)[1] if "desc: " in line else ""
        kind = desc.split(None, 1)[0] if desc else ""
        rels = [r.split("/")[-1] for r in
                [w for part in desc.split("rel ")[1:] for w in part.split(None, 1)[:1]]]
        if kind in HARMLESS.get(rmgr, ()):
            continue
        if rmgr == "Transaction" and kind.startswith("ABORT"):
            continue
        if rmgr == "Transaction" and kind.startswith("COMMIT") and tx in catalog_xids:
            continue
        if stats_write(rmgr, kind, rels):
            catalog_xids.add(tx)
            continue
        return line.strip()[:300]
    return None


def wal_command(bindir, pgdata, start_lsn, end_lsn):
    """Shell (as postgres on the host): pg_waldump of the records from START_LSN to END_LSN
    on the timeline of the latest checkpoint, without the lines of the harmless kinds VACUUM
    writes by the thousand (they are harmless whatever their relation; the rest is read by
    wal_writes). Exits non-zero when the WAL is not all there."""
    from hatasks.shell import q

    drop = "|".join(sorted(HARMLESS["Heap2"] | {"FPI_FOR_HINT"}))
    inner = (f"tli=$({q(bindir + '/pg_controldata')} -D {q(pgdata)} | "
             "sed -n \"s/^Latest checkpoint's TimeLineID: *//p\"); "
             f"{q(bindir + '/pg_waldump')} -t \"$tli\" -p {q(pgdata + '/pg_wal')} "
             f"-s {q(start_lsn)} -e {q(end_lsn)} | grep -vE {q('desc: (' + drop + ') ')} | "
             "head -c 2000000; exit ${PIPESTATUS[0]}")
    return f"cd /tmp && bash -c {q(inner)}"


def wal_quiet(ctx, host, start_lsn, end_lsn):
    """(True, how) when HOST's WAL from START_LSN to END_LSN holds no record that can carry a
    committed write to a user table (read with pg_waldump on the host: no table scan);
    (False, why) otherwise or when the WAL cannot be read in full (recycled, another
    timeline): then only a scan proves anything."""
    h = remote.host(ctx, host)
    if not start_lsn or not end_lsn:
        return False, "no WAL position"
    if not all(re.match(r"^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$", x) for x in (start_lsn, end_lsn)):
        return False, "not a WAL position"
    if not h.vars.get("pg_bindir") or not h.vars.get("pgdata"):
        return False, "no pg_bindir/pgdata in the inventory"
    res = remote.run(ctx, h, wal_command(h.vars["pg_bindir"].rstrip("/"),
                                         h.vars["pgdata"].rstrip("/"), start_lsn, end_lsn),
                     user="postgres", probe=True, warn=True)
    if res.exited != 0:
        return False, f"pg_waldump: {(res.stderr or res.stdout).strip()[-200:]}"
    if len(res.stdout) >= 2000000:
        return False, "too much WAL to read"
    found = wal_writes(res.stdout)
    if found:
        return False, f"a record that may write: {found}"
    return True, f"its WAL from {start_lsn} to {end_lsn} holds only checkpoints, VACUUM and catalog statistics"
