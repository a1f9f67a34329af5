"""Divergence of two backends, proven from the backends themselves: what a rebuild would destroy.

pgpool's view and the journal say which backend SHOULD hold the newest data; they are hints. Before
anything moves aside or overwrites a backend's data, `prove` reads both backends and answers the
one question that matters: does the TARGET hold a committed write the SOURCE lacks?

1. When a backend leaves replication through hatasks (`pgpool.detach`), its write position is
   journaled (`record_left`, event ``left``): system identifier, WAL LSN, per-database commit
   counters and a content fingerprint (row count + checksum) of every table.
2. `prove`: the same system and the same WAL position now: nothing was written since it left
   (no scan at all). Every table of the target with the fingerprint it left with: nothing
   changed (one scan of the target). Otherwise both backends' fingerprints are compared: equal tables are fine;
   a differing table whose target fingerprint is still the one recorded when it left was only
   changed on the source. Every other differing table is compared row by row by primary key
   (a table without one: by whole-row hash): rows only on the target and rows that differ are the
   target's writes the source lacks (``target_only``, ``conflicts``); rows only on the source are
   listed too (inserted on the source, or deleted on the target: a row compare cannot tell).
"""

import collections
import json
import time

from hatasks import compare, journal, remote
from hatasks.errors import HaError, StateError
from hatasks.syncplan import digest_query

#: how many keys of each kind a refusal names (the salvage file has them all)
SAMPLE = 5


def port_of(h):
    return int(h.vars.get("pg_port") or 5432)


# --------------------------------------------------------------------------- fingerprints


def digests(ctx, host, port, on_table=None):
    """{db: {"schema.table": [count, checksum]}} of every connectable non-template database;
    ON_TABLE(host) is called after each table (progress)."""
    h = remote.host(ctx, host)
    out = {}
    for db in [r["datname"] for r in remote.sql_rows(ctx, h, compare.LIST_DBS, port=port)]:
        tables = {}
        with remote.pg_connect(ctx, h, port=port, dbname=db) as conn:
            with conn.cursor() as cur:
                cur.execute(compare.LIST_TABLES)
                for schema, table in cur.fetchall():
                    cur.execute(digest_query(schema, table))
                    n, s = cur.fetchone()
                    tables[f"{schema}.{table}"] = [int(n), str(s)]
                    if on_table:
                        on_table(h.name)
        out[db] = tables
    return out


def compare_digests(ctx, ports, keep=False, on_table=None):
    """Checksums of the backends {host: port} in parallel: {"equal", "tables", "differences",
    "hosts"} (and "digests", each host's map, with KEEP)."""
    res = remote.probe_many(ctx, list(ports), lambda n: digests(ctx, n, ports[n], on_table))
    bad = [r.message for r in res.values() if isinstance(r, HaError)]
    if bad:
        raise StateError("cannot verify: " + "; ".join(bad))
    rows, diffs = compare.diff_digests(res)
    out = {"hosts": list(res), "equal": not diffs, "tables": rows, "differences": diffs}
    if keep:
        out["digests"] = res
    return out


POSITION = ("SELECT (SELECT system_identifier FROM pg_control_system())::text AS sysid, "
            "CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END AS lsn, "
            "(SELECT json_object_agg(datname, xact_commit) FROM pg_stat_database "
            "WHERE datname IS NOT NULL)::text AS commits")


def position(ctx, host, port=None):
    """HOST's write position now: {"sysid", "lsn", "commits": {db: n}} (catalog reads only)."""
    h = remote.host(ctx, host)
    row = remote.sql_rows(ctx, h, POSITION, port=port or port_of(h))[0]
    return {"sysid": row["sysid"], "lsn": row["lsn"], "commits": json.loads(row["commits"] or "{}")}


def record_left(ctx, cluster, host, reason):
    """Journal HOST's write position and table fingerprints as it leaves replication
    (event ``left``). Returns the record, or None (under --dry, or HOST unreadable: then a
    later proof compares row by row)."""
    h = remote.host(ctx, host)
    if remote.is_dry(ctx):
        return None
    try:
        pos = position(ctx, h)
        fp = digests(ctx, h, port_of(h))
    except HaError as exc:
        print(f"note: {h.name}'s write position not recorded ({exc.message}): a later resync "
              f"proves it clean row by row", flush=True)
        return None
    return journal.Journal(ctx).write("left", cluster, "left", {"host": h.name}, backend=h.name,
                                      reason=reason, position=pos, digests=fp)


def last_left(ctx, cluster, host):
    """The ``left`` record of HOST since the backends were last made equal (a done resync or
    recovery), or None."""
    found = None
    for r in journal.Journal(ctx).records():
        if r.get("cluster") != cluster:
            continue
        if r.get("event") == "done" and r.get("action") in ("sync.resync", "pgpool.recover"):
            found = None
        elif r.get("event") == "left" and r.get("backend") == host:
            found = r
    return found


# --------------------------------------------------------------------------- row by row

PK_COLUMNS = ("SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
              "AND a.attnum = ANY(i.indkey) WHERE i.indisprimary "
              "AND i.indrelid = (quote_ident(%s) || '.' || quote_ident(%s))::regclass "
              "ORDER BY array_position(i.indkey, a.attnum)")


def pk_columns(cur, schema, table):
    cur.execute(PK_COLUMNS, (schema, table))
    return [r[0] for r in cur.fetchall()]


def rows_query(schema, table, pk):
    """(key as JSON text, row hash, row as JSON text) of every row."""
    from psycopg2 import sql  # on first use: psycopg2 costs start-up time to every command

    key = (sql.SQL("json_build_array({})::text").format(
        sql.SQL(", ").join(sql.SQL("r.{}").format(sql.Identifier(c)) for c in pk)) if pk
        else sql.SQL("md5(r::text)"))
    return sql.SQL("SELECT {}, md5(r::text), row_to_json(r)::text FROM {}.{} AS r").format(
        key, sql.Identifier(schema), sql.Identifier(table))


def table_rows(ctx, host, port, db, name):
    """(pk columns, {key: [hash, row json]}) of one table; without a primary key the key is
    the row hash and the value a list of duplicates."""
    schema, table = name.split(".", 1)
    with remote.pg_connect(ctx, remote.host(ctx, host), port=port, dbname=db) as conn:
        with conn.cursor() as cur:
            pk = pk_columns(cur, schema, table)
            cur.execute(rows_query(schema, table, pk))
            out = collections.defaultdict(list) if not pk else {}
            for key, digest, row in cur.fetchall():
                if pk:
                    out[key] = [digest, row]
                else:
                    out[key].append([digest, row])
    return pk, dict(out)


def diff_rows(src, tgt, keyed=True):
    """Pure: {key: value} of source and target -> (target_only, conflicts, source_only) keys.
    Keyed values are [hash, row]; without a primary key (keyed False) values are lists of
    duplicates and only counts per hash compare (no conflicts can be told)."""
    if not keyed:
        extra = [k for k in tgt if len(tgt[k]) > len(src.get(k, []))]
        fewer = [k for k in src if len(src[k]) > len(tgt.get(k, []))]
        return extra, [], fewer
    target_only = [k for k in tgt if k not in src]
    conflicts = [k for k in tgt if k in src and src[k][0] != tgt[k][0]]
    source_only = [k for k in src if k not in tgt]
    return sorted(target_only), sorted(conflicts), sorted(source_only)


def extra_rows(src, tgt, keys, keyed=True):
    """Pure: the target's rows (JSON text) behind KEYS: one per key, or without a primary key
    the duplicates the source lacks."""
    if keyed:
        return [tgt[k][1] for k in keys]
    return [r[1] for k in keys for r in tgt[k][len(src.get(k, [])):]]


# --------------------------------------------------------------------------- the proof


def unchanged_since_left(left, now_pos):
    """True when NOW_POS is the very write position the backend had when it left."""
    pos = (left or {}).get("position") or {}
    return bool(pos.get("lsn") and pos.get("sysid") == now_pos.get("sysid")
                and pos.get("lsn") == now_pos.get("lsn"))


def prove(ctx, cluster, source, target, source_port=None, target_port=None):
    """Does TARGET hold committed writes SOURCE lacks? Reads both backends.

    Returns {"clean": bool, "how": one line, "tables": [{"database", "table", "pk",
    "target_only", "conflicts", "source_only" (counts), "samples", "rows"}], "seconds"}.
    "rows" (not shown) carries what a salvage file needs. Raises StateError when a backend
    cannot be read: nothing is proven then."""
    t0 = time.monotonic()
    s, t = remote.host(ctx, source), remote.host(ctx, target)
    sp, tp = source_port or port_of(s), target_port or port_of(t)
    left = last_left(ctx, cluster, t.name)
    if left:
        try:
            now = position(ctx, t, tp)
        except HaError as exc:
            raise StateError(f"cannot prove {t.name} holds no write {s.name} lacks: "
                             f"{exc.message}") from None
        if unchanged_since_left(left, now):
            return {"clean": True, "tables": [], "seconds": round(time.monotonic() - t0, 3),
                    "how": f"{t.name} has not written anything since it left replication at "
                           f"{left.get('ts')} (same system, WAL position {now['lsn']})"}
        same_system = now.get("sysid") == (left.get("position") or {}).get("sysid")
        if same_system and now.get("lsn"):
            # its WAL moved: a checkpoint, VACUUM, ANALYZE? Read the records, not the tables
            quiet, how = compare.wal_quiet(ctx, t, (left.get("position") or {}).get("lsn"), now["lsn"])
            if quiet:
                return {"clean": True, "tables": [], "seconds": round(time.monotonic() - t0, 3),
                        "how": f"{t.name} has written nothing but maintenance since it left "
                               f"replication at {left.get('ts')}: {how}"}
        if left.get("digests") and same_system:
            # its WAL moved (a checkpoint, a restart): are its contents still those it left with?
            try:
                mine = digests(ctx, t, tp)
            except HaError as exc:
                raise StateError(f"cannot prove {t.name} holds no write {s.name} lacks: "
                                 f"{exc.message}") from None
            if mine == left["digests"]:
                return {"clean": True, "tables": [], "seconds": round(time.monotonic() - t0, 3),
                        "how": f"every table of {t.name} has the fingerprint it had when it left "
                               f"replication at {left.get('ts')}"}
    try:
        cmp = compare_digests(ctx, {s.name: sp, t.name: tp}, keep=True)
    except HaError as exc:
        raise StateError(f"cannot prove {t.name} holds no write {s.name} lacks: "
                         f"{exc.message}") from None
    recorded = (left or {}).get("digests") or {}
    tables = []
    for d in cmp["differences"]:
        db, name = d["database"], d["table"]
        now_fp = cmp["digests"][t.name].get(db, {}).get(name) if name else None
        if name is None:
            if db not in cmp["digests"][t.name]:
                continue   # the database is only on the source: nothing of the target's
            raise StateError(f"cannot prove {t.name} holds no write {s.name} lacks: database "
                             f"{db} exists only on {t.name}")
        if now_fp is None:
            continue   # table only on the source
        if recorded.get(db, {}).get(name) == now_fp:
            continue   # the target's table is as it was when it left: only the source changed
        new_table = name not in cmp["digests"][s.name].get(db, {})
        if new_table:
            pk, trows = table_rows(ctx, t, tp, db, name)
            srows = {}
        else:
            got = remote.probe_many(ctx, [s.name, t.name], lambda n: table_rows(
                ctx, n, sp if n == s.name else tp, db, name))
            bad = [r.message for r in got.values() if isinstance(r, HaError)]
            if bad:
                raise StateError("cannot compare row by row: " + "; ".join(bad))
            (_, srows), (pk, trows) = got[s.name], got[t.name]
        target_only, conflicts, source_only = diff_rows(srows, trows, keyed=bool(pk))
        if not target_only and not conflicts:
            continue
        tables.append({
            "database": db, "table": name, "pk": pk, "target_only": len(target_only),
            "new_table": new_table,
            "conflicts": len(conflicts), "source_only": len(source_only),
            "samples": {"target_only": target_only[:SAMPLE], "conflicts": conflicts[:SAMPLE]},
            "rows": {"target_only": extra_rows(srows, trows, target_only, bool(pk)),
                     "conflicts": [{"key": k, "source": srows[k][1], "target": trows[k][1]}
                                   for k in conflicts]}})
    how = (f"compared {len(cmp['tables'])} tables by checksum"
           + (f", {len(cmp['differences'])} differ" if cmp["differences"] else ", all equal")
           + ("; the target's recorded fingerprints from when it left were used" if left else
              "; no recorded position of the target: differing tables compared row by row"))
    return {"clean": not tables, "tables": tables, "how": how,
            "seconds": round(time.monotonic() - t0, 3)}


def describe(result, source, target):
    """One line naming the target's writes the source lacks (tables, counts, sample keys)."""
    parts = []
    for x in result["tables"]:
        bits = []
        if x["target_only"]:
            bits.append(f"{x['target_only']} row(s) only on {target}, e.g. "
                        f"{', '.join(map(str, x['samples']['target_only']))}")
        if x["conflicts"]:
            bits.append(f"{x['conflicts']} conflicting, e.g. "
                        f"{', '.join(map(str, x['samples']['conflicts']))}")
        key = f" by {','.join(x['pk'])}" if x["pk"] else " (no primary key: by row)"
        if x.get("new_table"):
            key += f" (a table only {target} has)"
        parts.append(f"{x['database']} {x['table']}{key}: " + "; ".join(bits))
    return "; ".join(parts)


def public(result):
    """The proof without its row payload (for the journal and --format json)."""
    return dict(result, tables=[{k: v for k, v in x.items() if k != "rows"}
                                for x in result.get("tables", [])])
