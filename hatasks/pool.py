"""Pure parsers for pgpool-II's view of its backends -> one dict.

No I/O here. Inputs: ``SHOW pool_nodes`` (psql aligned text, ``psql -A`` rows, or rows from
psycopg2), ``pcp_node_info`` (terse and ``-v``), and ``show pool_status`` (pgpool 3.x of the
2008 manual with ``server_status`` / ``replication_enabled`` / ``current_backend_host_name``,
and pgpool-II 4.x with ``backend_hostnameN`` / ``backend_statusN``). All return::

    {
      "backends": [{"node_id": int, "host": str, "port": int, "status": "up|down",
                    "pool_status": raw pgpool status ("up", "waiting", "down", ...),
                    "pg_status", "role", "pg_role", "weight", "last_status_change"}],
      "degenerated": bool,   # some backend is not up: pgpool no longer writes to all of them
      "replicating": bool,   # two or more backends and every one up
      "newest": host | None, # the backend holding the newest data when degenerated
      "main": host | None,   # pgpool's main/primary node (2008: current_backend_host_name)
    }

Status words: pgpool's ``up`` and ``waiting`` (up, no connection yet; pcp status 1 and 2)
count as up; ``down``, ``unused``, ``quarantine`` and anything else as down, the raw word kept
in ``pool_status``.

``newest``: when every backend is up, None (nothing to resync); when none is, None (nothing
tells); when degenerated, the one backend still up, or, with several still up, pgpool's main
node among them (replication keeps those identical). 2008's ``current_backend_host_name``
names it when it is up (the manual's bold warning).
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
#: pcp_node_info's numeric status: 0 initializing, 1 up (no connection), 2 up, 3 down,
#: 4 quarantine? (pgpool 4.x prints the word as well; the word wins when present)
PCP_STATUS = {"0": "initializing", "1": "waiting", "2": "up", "3": "down", "4": "unused"}


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


def summarize(backends, main_hint=None):
    """Build the pgpool.status dict from a backend list (shared by every parser here)."""
    if not backends:
        raise ValueError("no pgpool backend found in the input")
    ups = [b for b in backends if b["status"] == "up"]
    degenerated = len(ups) < len(backends)
    main = None
    if main_hint:
        main = main_hint
    else:
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


def newest_backend(status):
    """The host holding the newest data per a pgpool status dict, or None (not degenerated,
    nothing up, or unknown)."""
    if not status or not status.get("degenerated"):
        return None
    return status.get("newest")


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


# --------------------------------------------------------------------------- pcp_node_info

_PCP_VERBOSE_KEYS = {
    "hostname": "hostname", "port": "port", "status": "status_code", "weight": "lb_weight",
    "status name": "status", "backend status name": "pg_status", "role": "role",
    "backend role": "pg_role", "replication delay": "replication_delay",
    "replication state": "replication_state",
    "replication sync state": "replication_sync_state",
    "last status change": "last_status_change",
}


def parse_pcp_node_info(text, node_id=None):
    """``pcp_node_info`` output (terse lines or ``-v`` blocks) -> pgpool.status dict.

    pcp_node_info does not print the node id: it comes from ``node_id`` (one record), from
    ``+ pcp_node_info ... -n N`` trace lines before each record, else from the record's
    position (``pcp_node_info`` without ``-n`` lists every node in id order).
    """
    if text is None or not str(text).strip():
        raise ValueError("pcp_node_info output is empty")
    records = []
    pending_id = None
    block = None
    for raw in str(text).splitlines():
        line = raw.strip()
        m = re.search(r"pcp_node_info\b.*?(?:-n\s*|--node-id[= ])(\d+)", line)
        if line.startswith("+") or line.startswith("$") or line.startswith("#"):
            if m:
                pending_id = int(m.group(1))
            continue
        if not line:
            if block:
                records.append(block)
                block = None
            continue
        kv = re.match(r"^([A-Za-z][A-Za-z ]*?)\s*:\s*(.*)$", line)
        if kv and kv.group(1).lower() in _PCP_VERBOSE_KEYS:
            if block is None:
                block = {"_id": pending_id}
                pending_id = None
            block[_PCP_VERBOSE_KEYS[kv.group(1).lower()]] = kv.group(2).strip()
            continue
        if block:
            records.append(block)
            block = None
        if line.startswith(("ERROR", "FATAL")) or "pcp_node_info" in line.lower():
            raise ValueError("pcp_node_info failed: %s" % line)
        words = line.split()
        rec = _pcp_terse(words)
        if rec is not None:
            rec["_id"] = pending_id
            pending_id = None
            records.append(rec)
    if block:
        records.append(block)
    if not records:
        raise ValueError("no pcp_node_info record found in: %r" % str(text).strip()[:120])
    backends = []
    for pos, rec in enumerate(records):
        if rec.get("_id") is not None:
            nid = rec["_id"]
        elif node_id is not None and len(records) == 1:
            nid = int(node_id)
        else:
            nid = pos
        if "status" not in rec and "status_code" in rec:
            rec["status"] = PCP_STATUS.get(rec["status_code"], rec["status_code"])
        rec["node_id"] = nid
        if "hostname" not in rec or "port" not in rec:
            raise ValueError("pcp_node_info record lacks hostname/port: %r" % rec)
        backends.append(_backend_from_record(rec))
        backends[-1]["status_code"] = _none(rec.get("status_code"))
    return summarize(backends)


def _pcp_terse(words):
    """``db01 5432 2 0.500000 up up main main 0 none none 2026-11-25 16:46:59`` (4.2+, 13 words),
    ``db01 5432 2 0.500000 up primary 0 ...`` (4.0/4.1) or ``db01 5432 2 0.500000`` (3.x)."""
    if len(words) < 4 or not words[1].isdigit() or not words[2].isdigit():
        return None
    rec = {"hostname": words[0], "port": words[1], "status_code": words[2],
           "lb_weight": words[3]}
    if len(words) >= 13:
        rec.update(status=words[4], pg_status=words[5], role=words[6], pg_role=words[7],
                   replication_delay=words[8], replication_state=words[9],
                   replication_sync_state=words[10],
                   last_status_change=" ".join(words[11:13]))
    elif len(words) >= 6:
        rec.update(status=words[4], role=words[5])
        if len(words) >= 8:
            rec["last_status_change"] = " ".join(words[-2:])
    return rec


# --------------------------------------------------------------------------- show pool_status

def parse_pool_status_items(text):
    """``show pool_status`` -> {item: value} from psql aligned (``|``), unaligned, or the
    manual's tab-separated table. Descriptions are dropped."""
    if text is None or not str(text).strip():
        raise ValueError("show pool_status output is empty")
    items = {}
    for raw in str(text).splitlines():
        s = raw.strip()
        if not s or re.match(r"^\(\d+ rows?\)", s) or re.match(r"^[-+]+$", s):
            continue
        if "|" in raw:
            cells = [c.strip() for c in raw.split("|")]
        elif "\t" in raw:
            cells = [c.strip() for c in raw.split("\t")]
        else:
            continue
        if len(cells) < 2 or not cells[0] or cells[0] == "item":
            continue
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", cells[0]):
            continue
        # psql marks a value that continues on the next line with a trailing "+"
        items[cells[0]] = re.sub(r"\s+\+$", "", cells[1])
    if not items:
        raise ValueError("no show pool_status row found in: %r" % str(text).strip()[:120])
    return items


_SERVER_STATUS_RE = re.compile(r"(?P<label>[A-Za-z_]+)\((?P<host>[^\s()]+) on (?P<port>\d+)\)\s+"
                               r"(?P<status>\w+)")


def parse_pool_status_legacy(text):
    """``show pool_status`` -> pgpool.status dict (plus ``replication_enabled``, ``items``).

    pgpool 3.x (the manual): backends from ``server_status`` ("master(DB01 on 5432) down
    secondary(DB02 on 5432) up"); degenerated when ``replication_enabled`` is 0 or a backend
    is down; newest = ``current_backend_host_name``. Host names are lower-cased (the manual
    prints DB01 for the host db01). pgpool-II 4.x: backends from ``backend_hostnameN`` /
    ``backend_portN`` / ``backend_statusN``.
    """
    items = parse_pool_status_items(text)
    backends = []
    server_status = items.get("server_status")
    if server_status:
        for n, m in enumerate(_SERVER_STATUS_RE.finditer(server_status)):
            raw = m.group("status")
            backends.append({
                "node_id": n,
                "host": m.group("host").lower(),
                "port": int(m.group("port")),
                "status": "up" if _up(raw) else "down",
                "pool_status": raw,
                "pg_status": None,
                "role": m.group("label").lower(),
                "pg_role": None,
                "weight": _float(items.get("weight_%s" % m.group("label").lower())),
                "last_status_change": None,
            })
        if not backends:
            raise ValueError("cannot read server_status %r" % server_status)
    else:
        n = 0
        while "backend_hostname%d" % n in items:
            raw = items.get("backend_status%d" % n, "")
            backends.append({
                "node_id": n,
                "host": items["backend_hostname%d" % n],
                "port": _int(items.get("backend_port%d" % n), "backend_port%d" % n),
                "status": "up" if _up(raw) else "down",
                "pool_status": raw,
                "pg_status": None,
                "role": None,
                "pg_role": None,
                "weight": _float(items.get("backend_weight%d" % n)),
                "last_status_change": None,
            })
            n += 1
        if not backends and "backend_host_name" in items:
            # pgpool 3.x without server_status: the two configured hosts, status unknown
            raise ValueError("show pool_status has no server_status row: backend status unknown")
        if not backends:
            raise ValueError("show pool_status names no backend (no server_status, no "
                             "backend_hostname0)")

    current = items.get("current_backend_host_name")
    current = current.lower() if current else None
    result = summarize(backends, main_hint=current)
    repl = items.get("replication_enabled")
    replication_enabled = None if repl is None else repl.strip() == "1"
    if replication_enabled is False:
        result["degenerated"] = True
        result["replicating"] = False
    if result["degenerated"]:
        ups = [b["host"] for b in backends if b["status"] == "up"]
        if current and current in ups:
            result["newest"] = current
        elif len(ups) == 1:
            result["newest"] = ups[0]
        elif current and not ups:
            result["newest"] = None
    result["replication_enabled"] = replication_enabled
    result["current_backend"] = current
    result["items"] = items
    return result
