"""Salvage files: the writes a backend holds that the chosen source lacks, as SQL to re-apply.

When `divergence.prove` finds rows only on the target (or rows that differ), `write` builds a
salvage file and keeps it twice: next to the target's data directory on the target
(``PGDATA.salvage-STAMP.sql``, beside the kept ``PGDATA.STAMP``) and in the state dir
(``salvage/<cluster>-<target>-STAMP.sql``), and journals it (event ``salvage``).

The file is plain SQL, one ``\\connect DB`` section per database: for every row only on the
target, an ``INSERT ... SELECT * FROM json_populate_record(...) ON CONFLICT DO NOTHING`` (the row
exactly as the target holds it), then the serial sequences of the key columns moved past the
largest key; every conflicting key is listed in comments with both versions, for the operator
to decide. The statements are composed by the target's own server (``format('%I', '%L')``), so
quoting is PostgreSQL's. `apply` runs a file through pgpool (both backends get the rows) in one
transaction per database: ``inv sync.salvage --file F``; ``psql -f F`` through pgpool works too.
"""

import base64
import json
import os
import sys
import time

from hatasks import backends, divergence, journal, remote
from hatasks.errors import HaError, StateError, UsageError
from hatasks.shell import q

INSERTS = ("SELECT format('INSERT INTO %%I.%%I SELECT * FROM json_populate_record(NULL::%%I.%%I, %%L) "
           "ON CONFLICT DO NOTHING;', %s, %s, %s, %s, r) AS line FROM unnest(%s::text[]) AS r")
SETVAL = ("SELECT format('SELECT setval(%%L, greatest((SELECT max(%%I) FROM %%I.%%I), 1));', s, "
          "%s, %s, %s) AS line FROM pg_get_serial_sequence(format('%%I.%%I', %s, %s), %s) AS s "
          "WHERE s IS NOT NULL")
CONNECT = "SELECT format('\\connect %%I', %s::text) AS line"
#: a file larger than this is kept in the state dir only (it goes to the target on a command line)
REMOTE_MAX = 1_000_000


def table_ddl(ctx, h, port, db, schema, table):
    """The SQL that creates one table as H holds it (`pg_dump --schema-only -t`, with the
    sequences it owns, its keys and indexes): statements only, without pg_dump's comments,
    session settings and psql meta-commands (the file runs in one transaction through
    pgpool). [] and a comment line when it cannot be read."""
    pattern = '"{}"."{}"'.format(schema.replace('"', '""'), table.replace('"', '""'))
    res = remote.run(ctx, h, f"pg_dump --schema-only --no-owner --no-privileges -p {int(port)} "
                             f"-t {q(pattern)} {q(db)}", user="postgres", warn=True)
    if res.exited != 0:
        why = (res.stderr or res.stdout or "").strip().splitlines()[-1:] or ["no output"]
        return [f"-- could not read the definition of {schema}.{table} on {h.name}: {why[0]}; "
                f"create the table before applying this file"]
    skip = ("--", "\\", "SET ", "SELECT pg_catalog.set_config(")
    return [ln for ln in res.stdout.splitlines() if ln.strip() and not ln.startswith(skip)]


def sql_text(ctx, host, port, result, source, target, when):
    """The salvage file's text, composed by HOST's server (the target)."""
    h = remote.host(ctx, host)
    out = [f"-- hatasks salvage: writes on {target} that {source} lacked, found {when}",
           f"-- {target}'s data directory is kept; this file re-applies its rows through pgpool:",
           "--   inv sync.salvage --file THIS_FILE --yes   (or psql -f THIS_FILE through pgpool)",
           "-- rows only on the target are INSERTed (ON CONFLICT DO NOTHING); conflicting keys are",
           "-- listed below with both versions: the operator decides.", ""]
    by_db = {}
    for x in result["tables"]:
        by_db.setdefault(x["database"], []).append(x)
    for db, tables in by_db.items():
        out.append(remote.sql_rows(ctx, h, CONNECT, (db,), port=port)[0]["line"])
        for x in tables:
            schema, table = x["table"].split(".", 1)
            out.append(f"-- {x['table']}: {x['target_only']} row(s) only on {target}, "
                       f"{x['conflicts']} conflicting key(s)")
            if x.get("new_table"):
                out.append(f"-- {x['table']} exists only on {target}: created first, as "
                           f"{target} defines it")
                out += table_ddl(ctx, h, port, db, schema, table)
            rows = x["rows"]["target_only"]
            if rows:
                got = remote.sql_rows(ctx, h, INSERTS, (schema, table, schema, table, rows),
                                      port=port, dbname=db)
                out += [r["line"] for r in got]
                for col in x["pk"]:
                    got = remote.sql_rows(ctx, h, SETVAL, (col, schema, table, schema, table, col),
                                          port=port, dbname=db)
                    out += [r["line"] for r in got]
            for c in x["rows"]["conflicts"]:
                out.append(f"-- CONFLICT {x['table']} key {c['key']}:")
                out.append(f"--   {source}: {c['source']}")
                out.append(f"--   {target}: {c['target']}")
        out.append("")
    return "\n".join(out) + "\n"


def local_dir(ctx):
    path = os.path.join(journal.state_dir(ctx), "salvage")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def write(ctx, cluster, result, source, target, stamp, port=None):
    """Build and keep the salvage file of a proof RESULT that found target-only writes, journal
    it, return {"local", "remote", "host"}. Under --dry: nothing written, None."""
    if remote.is_dry(ctx):
        print(f"[dry] would write a salvage file of {target}'s writes", flush=True)
        return None
    t = remote.host(ctx, target)
    port = port or divergence.port_of(t)
    text = sql_text(ctx, t, port, result, source, target, stamp)
    local = os.path.join(local_dir(ctx), f"{cluster}-{t.name}-{stamp}.sql")
    journal.write_private(local, text)
    where = None
    pgdata = (t.vars.get("pgdata") or "").rstrip("/")
    if pgdata and len(text) <= REMOTE_MAX:
        where = f"{pgdata}.salvage-{stamp}.sql"
        b64 = base64.b64encode(text.encode()).decode()
        res = remote.run(ctx, t, f"umask 077; printf %s {q(b64)} | base64 -d > {q(where)}",
                         user="postgres", warn=True)
        if res.exited != 0:
            print(f"warning: salvage file not written on {t.name}: {res.stderr.strip()}; "
                  f"it is kept at {local}", flush=True)
            where = None
    journal.Journal(ctx).write("salvage", cluster, "salvage", {"host": t.name}, backend=t.name,
                               source=source, local=local, remote=where,
                               proof=divergence.public(result))
    return {"local": local, "remote": where, "host": t.name}


def sections(text):
    """Pure: a salvage file -> [(database, sql)] by its \\connect lines."""
    out, db, buf = [], None, []
    for line in text.splitlines():
        if line.startswith("\\connect "):
            if db is not None:
                out.append((db, "\n".join(buf)))
            name = line[len("\\connect "):].strip()
            if name.startswith('"') and name.endswith('"'):
                name = name[1:-1].replace('""', '"')
            db, buf = name, []
        elif db is not None:
            buf.append(line)
    if db is not None:
        out.append((db, "\n".join(buf)))
    return out


def apply(ctx, cluster, path):
    """Run the salvage file PATH (local) through pgpool, one transaction per database; then
    both backends must be equal (row counts and checksums). Returns {"databases", "equal"}."""
    if not os.path.isfile(path):
        raise UsageError(f"--file {path}: no such salvage file")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    parts = sections(text)
    if not parts or not text.startswith("-- hatasks salvage"):
        raise UsageError(f"--file {path}: not a hatasks salvage file")
    c = backends.pgpool_cluster(ctx, cluster)
    data = backends.read_pool_nodes(ctx, c.name)
    backends.check_node_ids(c, data)
    down = [b.get("host") for b in data["backends"] if b.get("status") != "up"]
    if down:
        raise StateError(f"pgpool shows {', '.join(down)} down: the salvage would reach only "
                         f"some backends; resync and attach first")
    via = remote.host(ctx, data["via"])
    for db, body in parts:
        print(f"{db}: applying {sum(1 for ln in body.splitlines() if ln.startswith('INSERT'))} "
              f"insert(s) through pgpool", flush=True)
        if remote.is_dry(ctx):
            continue
        with remote.pg_connect(ctx, via, port=backends.pgpool_port(c), dbname=db,
                               target=c.vars["vip"]) as conn:
            with conn.cursor() as cur:
                # one transaction: the first error rolls back the whole section
                cur.execute("BEGIN;\n" + body + "\nCOMMIT;")
    if remote.is_dry(ctx):
        return {"databases": [d for d, _ in parts], "dry": True}
    cmp = divergence.compare_digests(ctx, {h.name: divergence.port_of(h) for h in c.hosts})
    if not cmp["equal"]:
        d = cmp["differences"][0]
        raise StateError(f"salvage applied, but the backends differ: {d['database']}."
                         f"{d['table']} {json.dumps(d.get('counts'))}")
    print(f"salvage applied: {len(cmp['tables'])} tables equal on {', '.join(cmp['hosts'])}",
          flush=True)
    return {"databases": [d for d, _ in parts], "equal": True}


def prove_clean(ctx, cluster, target, source, force, chosen=False, what="the rebuild"):
    """Before TARGET's data is moved aside or overwritten from SOURCE: prove from both backends
    that TARGET holds no committed write SOURCE lacks (divergence.prove). Not proven: a salvage
    file of TARGET's writes is kept and journaled, and StateError (exit 3) names the tables,
    counts and sample keys, unless CHOSEN (the operator named the winner) or FORCE (then the
    rebuild goes on, the salvage file and the kept data dir hold the loser's writes).
    Returns the proof (divergence.public)."""
    s, t = remote.host(ctx, source), remote.host(ctx, target)
    try:
        result = divergence.prove(ctx, cluster, s.name, t.name)
    except HaError as exc:
        if force:
            print(f"warning: {exc.message}; going on (--force): {t.name}'s data dir is kept",
                  file=sys.stderr, flush=True)
            return {"clean": None, "how": exc.message, "tables": []}
        raise StateError(f"refusing {what}: {exc.message} (a backend that cannot be read may "
                         f"hold writes: start it, or --force to rebuild anyway; its data dir "
                         f"is kept)") from None
    if result["clean"]:
        print(f"proof: {t.name} holds no write {s.name} lacks ({result['how']}, "
              f"{result['seconds']}s)", flush=True)
        return divergence.public(result)
    stamp = time.strftime("%Y-%m-%d-%H%M%S")
    kept = write(ctx, cluster, result, s.name, t.name, stamp) or {}
    where = "; ".join(x for x in (kept.get("remote") and f"{t.name}:{kept['remote']}",
                                  kept.get("local")) if x)
    said = (f"{t.name} holds writes {s.name} lacks: {divergence.describe(result, s.name, t.name)}."
            f" Salvage SQL: {where or 'not written (--dry)'}")
    if chosen or force:
        print(f"WARNING: {said}. Rebuilding {t.name} from {s.name} as chosen; re-apply the "
              f"loser's writes afterwards: inv sync.salvage --file {kept.get('local')} --yes",
              file=sys.stderr, flush=True)
        return divergence.public(result)
    raise StateError(f"split brain: refusing {what}: {said}. Both sides hold writes: choose "
                     f"the winner (inv db.recover --source {s.name} or --source {t.name}, or "
                     f"sync.resync --source ...), then re-apply the other's writes: "
                     f"inv sync.salvage --file FILE --yes (the loser's salvage file)")
