"""Backends' contents for the FakeRemote: each host answers the catalog, fingerprint, position
and row queries of hatasks.compare / hatasks.divergence / hatasks.salvage from a small table of
rows, as PostgreSQL would. Only the network is fake: hatasks' own code composes the queries and
draws its conclusions from the answers.

contents = {host: {db: {"schema.table": {"pk": ["id"], "rows": {key_json: row_json}}}}}
"""

import hashlib
import json

from conftest import query_text


def digest(table):
    rows = sorted(table["rows"].values())
    return [len(rows), hashlib.md5("\n".join(rows).encode()).hexdigest()]


def row_hash(row):
    return hashlib.md5(row.encode()).hexdigest()


def serve(fake, contents, lsn=None, sysid="7300000000000000001"):
    """Answer every backend query of FAKE from CONTENTS (changed in place by the test).
    LSN: {host: "0/..."} (default: derived from the contents, so any write moves it)."""

    def answer(q):
        text = query_text(q.query)
        dbs = contents[q.host]
        if text.startswith("SELECT datname FROM pg_database"):
            return [{"datname": db} for db in dbs]
        if text.startswith("SELECT n.nspname, c.relname"):
            return [{"nspname": t.split(".")[0], "relname": t.split(".")[1]}
                    for t in sorted(dbs[q.dbname])]
        if "system_identifier" in text:
            pos = (lsn or {}).get(q.host) or "0/" + hashlib.md5(
                json.dumps(dbs, sort_keys=True).encode()).hexdigest()[:8]
            return [{"sysid": sysid, "lsn": pos, "commits": json.dumps({d: 1 for d in dbs})}]
        if text.startswith("SELECT count(*) FROM"):
            name = text.split(" FROM ")[1].replace('"', "")
            return [{"count": len(dbs[q.dbname][name]["rows"])}]
        if "hashtextextended" in text:
            name = text.split(" FROM ")[1].split(" AS ")[0].replace('"', "")
            n, s = digest(dbs[q.dbname][name])
            return [(n, s)]
        if "indisprimary" in text:
            schema, table = q.params
            return [(c,) for c in dbs[q.dbname][f"{schema}.{table}"]["pk"]]
        if "row_to_json(r)" in text:
            name = text.split(" FROM ")[1].split(" AS ")[0].replace('"', "")
            t = dbs[q.dbname][name]
            return [(k if t["pk"] else row_hash(r), row_hash(r), r) for k, r in t["rows"].items()]
        if text.startswith("SELECT format('\\connect"):
            return [{"line": f'\\connect "{q.params[0]}"'}]
        if "json_populate_record" in text:
            schema, table = q.params[0], q.params[1]
            return [{"line": f"INSERT INTO {schema}.{table} SELECT * FROM json_populate_record("
                             f"NULL::{schema}.{table}, '{r}') ON CONFLICT DO NOTHING;"}
                    for r in q.params[4]]
        if "pg_get_serial_sequence" in text:
            col, schema, table = q.params[0], q.params[1], q.params[2]
            return [{"line": f"SELECT setval('{schema}.{table}_{col}_seq', greatest((SELECT "
                             f"max({col}) FROM {schema}.{table}), 1));"}]
        raise AssertionError(f"dbsim: unexpected query on {q.host}: {text}")

    fake.sql(lambda host, text: "pool_nodes" not in text, answer)
    return contents


def table(*rows, pk=("id",)):
    """A table from (id, value) pairs."""
    out = {}
    for i, v in rows:
        out[json.dumps([i])] = json.dumps({"id": i, "v": v})
    return {"pk": list(pk), "rows": out}


def same(*rows):
    """Contents of one database GYOM_DB with one table public.t."""
    return {"GYOM_DB": {"public.t": table(*rows)}}
