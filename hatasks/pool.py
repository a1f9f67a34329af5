"""Pure parsers for pgpool-II's view of its backends -> one dict.

No I/O here. Input: ``SHOW pool_nodes`` (psql aligned text, ``psql -A`` rows, or rows from
psycopg2). It returns::

    {
      "backends": [{"node_id": int, "host": str, "port": int, "status": "up|down",
                    "pool_status": raw pgpool status ("up", "waiting", "down", ...),
                    "pg_status", "role", "pg_role", "weight", "last_status_change"}],
      "degenerated": bool,   # some backend is not up: pgpool no longer writes to all of them
      "replicating": bool,   # two or more backends and every one up
      "newest": host | None, # the backend holding the newest data when degenerated
      "main": host | None,   # pgpool's main/primary node
    }

Status words: pgpool's ``up`` and ``waiting`` (up, no connection yet) count as up; ``down``, ``unused``, ``quarantine`` and anything else as down, the raw word kept
in ``pool_status``.

``newest``: when every backend is up, None (nothing to resync); when none is, None (nothing
tells); when degenerated, the one backend still up, or, with several still up, pgpool's main
node among them (replication keeps those identical).
"""

import re

#: SHOW pool_nodes columns by pgpool version, for rows given without a header
POOL_NODES_COLUMNS = {
    # 4.2 - 4.4
    14: ("node_id", "hostname", "port", "status", "pg_status", "lb_weight", "role", "pg_role",
         "select_cnt", "load_balance_node", "replication_delay", "replication_state",
         "replication_sync_state", "last_status_change"),
    # 4.1
    12: ("node_id", "hostname", "port", "status", "lb_weight", "role", "select_cnt",
         "load_balance_node", "replication_delay", "replication_state",
         "replication_sync_state", "last_status_change"),
    # 4.0
    10: ("node_id", "hostname", "port", "status", "lb_weight", "role", "select_cnt",
         "load_balance_node", "replication_delay", "last_status_change"),
    # 3.x
    9: ("node_id", "hostname", "port", "status", "lb_weight", "role", "select_cnt",
        "load_balance_node", "replication_delay"),
}

UP_WORDS = ("up", "waiting", "connect_wait")


def _up(word):
    return (word or "").strip().lower() in UP_WORDS


def _int(value, what):
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        raise ValueError("pgpool %s is not a number: %r" % (what, value)) from None


def _float(value):
    try:
        return float(str(value).strip())
    except (TypeError, ValueError):
        return None


def summarize(backends):
    """Build the pgpool.status dict from a backend list."""
    if not backends:
        raise ValueError("no pgpool backend found in the input")
    ups = [b for b in backends if b["status"] == "up"]
    degenerated = len(ups) < len(backends)
    main = None
    for b in backends:
        if (b.get("role") or "").lower() in ("main", "primary", "master"):
            main = b["host"]
            break
    newest = None
    if degenerated and ups:
        if len(ups) == 1:
            newest = ups[0]["host"]
        else:
            for b in ups:
                if main is not None and b["host"].lower() == main.lower():
                    newest = b["host"]
            if newest is None:
                for b in ups:
                    if (b.get("role") or "").lower() in ("main", "primary", "master"):
                        newest = b["host"]
    return {
        "backends": backends,
        "degenerated": degenerated,
        "replicating": len(backends) >= 2 and not degenerated,
        "newest": newest,
        "main": main,
    }


def _backend_from_record(rec):
    """One SHOW pool_nodes record (dict keyed by column name) -> backend dict."""
    if "node_id" not in rec or "hostname" not in rec:
        raise ValueError("pool_nodes row lacks node_id/hostname: %r" % (rec,))
    raw = str(rec.get("status") or "").strip()
    return {
        "node_id": _int(rec["node_id"], "node_id"),
        "host": str(rec["hostname"]).strip(),
        "port": _int(rec.get("port"), "port"),
        "status": "up" if _up(raw) else "down",
        "pool_status": raw,
        "pg_status": _none(rec.get("pg_status")),
        "role": _none(rec.get("role")),
        "pg_role": _none(rec.get("pg_role")),
        "weight": _float(rec.get("lb_weight")),
        "load_balance_node": _bool_word(rec.get("load_balance_node")),
        "replication_delay": _none(rec.get("replication_delay")),
        "last_status_change": _none(rec.get("last_status_change")),
    }


def _none(value):
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def _bool_word(value):
    value = _none(value)
    if value is None:
        return None
    return value.lower() in ("true", "t", "1", "yes")


def _split_psql_line(line, sep="|"):
    return [cell.strip() for cell in line.split(sep)]


def _records_from_text(text):
    """Records of one SHOW pool_nodes result in psql aligned or unaligned (-A, -At) text."""
    records = []
    header = None
    for raw in str(text).splitlines():
        line = raw.rstrip("\n")
        s = line.strip()
        if not s or re.match(r"^\(\d+ rows?\)$", s) or re.match(r"^[-+]+$", s):
            continue
        if "|" not in s:
            continue
        cells = _split_psql_line(s)
        if cells and cells[0] == "node_id":
            if header is not None and records:
                raise ValueError("more than one SHOW pool_nodes result in the input")
            header = cells
            continue
        if not cells or not cells[0].isdigit():
            continue
        if header is not None and len(cells) == len(header):
            records.append(dict(zip(header, cells)))
        elif len(cells) in POOL_NODES_COLUMNS:
            records.append(dict(zip(POOL_NODES_COLUMNS[len(cells)], cells)))
        else:
            raise ValueError("SHOW pool_nodes row has %d columns, expected one of %s: %r"
                             % (len(cells), sorted(POOL_NODES_COLUMNS), s))
    return records


def parse_pool_nodes(text_or_rows, columns=None):
    """``SHOW pool_nodes`` -> pgpool.status dict.

    ``text_or_rows``: psql text (aligned with header, or ``-A``/``-At`` ``|`` rows), or a list
    of dicts (column name -> value) or tuples/lists (in ``columns`` order, else the pgpool
    version's order guessed from the row length) as psycopg2 returns them.
    """
    if text_or_rows is None:
        raise ValueError("SHOW pool_nodes gave nothing")
    if isinstance(text_or_rows, bytes):
        text_or_rows = text_or_rows.decode("utf-8", "replace")
    if isinstance(text_or_rows, str):
        if not text_or_rows.strip():
            raise ValueError("SHOW pool_nodes output is empty")
        records = _records_from_text(text_or_rows)
        if not records:
            raise ValueError("no SHOW pool_nodes row found in: %r" % text_or_rows.strip()[:120])
    else:
        records = []
        for row in text_or_rows:
            if isinstance(row, dict):
                records.append({str(k): v for k, v in row.items()})
                continue
            row = tuple(row)
            cols = columns or POOL_NODES_COLUMNS.get(len(row))
            if cols is None or len(cols) != len(row):
                raise ValueError("SHOW pool_nodes row has %d columns, expected one of %s"
                                 % (len(row), sorted(POOL_NODES_COLUMNS)))
            records.append(dict(zip(cols, row)))
        if not records:
            raise ValueError("SHOW pool_nodes returned no row")
    backends = [_backend_from_record(r) for r in records]
    ids = [b["node_id"] for b in backends]
    if len(set(ids)) != len(ids):
        raise ValueError("node ids repeat (%s): more than one SHOW pool_nodes result in the input"
                         % ", ".join(map(str, ids)))
    backends.sort(key=lambda b: b["node_id"])
    return summarize(backends)
