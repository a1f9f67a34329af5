"""Pure parsers for the other tools' outputs the runbook tells the operator to read.

No I/O here. Each function takes the text a command printed (or a log file's content) and
returns plain data:

- ``parse_pgpool_check(output)``: ``pgpool -n`` foreground start (the manual's config check).
- ``parse_pgpool_check_script(text)``: the same wrapped by ``pgpool.check``'s script.
- ``parse_apachectl(output)``: ``apachectl -t`` / ``apachectl start``.
- ``parse_pg_log_errors(text, limit=10)``: ERROR/FATAL/PANIC entries of a PostgreSQL log.
- ``parse_ha_log(text)``: ERROR/FATAL/CRIT lines of Heartbeat's ha-log or pacemaker.log.
- ``parse_pg_dumpall_log(text)``: errors in the stderr of ``pg_dumpall -v``.
- ``parse_vacuumdb_log(text)``: errors and warnings in the stderr of ``vacuumdb -v``.
"""

import datetime
import re

# --------------------------------------------------------------------------- pgpool -n

# "2007-12-18 09:06:32 ERROR: pid 9043: pool_config: ..."            (pgpool 3.x)
# "2026-11-25 17:09:31.735: main pid 7177: FATAL:  invalid value ..." (pgpool-II 4.x)
# "ERROR: pid file found. is another pgpool(7476) is running?"        (no prefix)
_PGPOOL_LEVEL_RE = re.compile(
    r"\b(?P<level>DEBUG\d?|LOG|INFO|NOTICE|WARNING|ERROR|FATAL|PANIC|DETAIL|HINT|CONTEXT):\s+"
    r"(?:pid \d+:\s*)?(?P<msg>.*)$")
_PGPOOL_STARTED_RE = re.compile(r"\bpgpool(?:-II)? successfully started\b")


def parse_pgpool_check(output):
    """``pgpool -n`` output -> {"ok", "started", "errors", "warnings", "after_start", "messages"}.

    ``ok``: pgpool printed "successfully started" and no ERROR/FATAL line came before it (the
    manual: backend errors may follow, the first line decides). ``errors``: the ERROR/FATAL
    lines before the start (all of them when it never started), each followed by its
    DETAIL/HINT lines; pgpool 4.x's "could not open configuration file" WARNING counts as an
    error (it then runs on built-in defaults, which checks nothing).
    """
    text = _text(output)
    started = False
    errors, warnings, after, messages = [], [], [], []
    last = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if _PGPOOL_STARTED_RE.search(line):
            started = True
            last = None
            continue
        m = _PGPOOL_LEVEL_RE.search(line)
        if not m:
            continue
        level, msg = m.group("level"), m.group("msg").strip()
        if level in ("DETAIL", "HINT", "CONTEXT"):
            if last is not None:
                last.append(line)
                messages[-1][level.lower()] = msg
            continue
        messages.append({"level": level, "message": msg, "line": line,
                         "after_start": started})
        bad = level in ("ERROR", "FATAL", "PANIC") or \
            (level == "WARNING" and "could not open configuration file" in msg)
        if bad:
            target = after if started else errors
        elif level == "WARNING":
            target = warnings
        else:
            last = None
            continue
        target.append(line)
        last = target
    ok = started and not errors
    if not started and not errors:
        errors.append("pgpool did not print 'successfully started' (no error line either)")
    return {
        "ok": ok,
        "started": started,
        "errors": _joined(errors),
        "warnings": warnings,
        "after_start": _joined(after),
        "messages": messages,
    }


def _joined(lines):
    """Keep DETAIL/HINT lines with the error they belong to: one string per error."""
    out = []
    for line in lines:
        if out and re.search(r"\b(DETAIL|HINT|CONTEXT):", line):
            out[-1] = out[-1] + " | " + line
        else:
            out.append(line)
    return out


def _text(output):
    if output is None:
        return ""
    if isinstance(output, bytes):
        return output.decode("utf-8", "replace")
    return str(output)


# --------------------------------------------------------------------------- apachectl

_AP_SYNTAX_RE = re.compile(r"(?:(?P<code>AH\d+):\s*)?Syntax error on line (?P<line>\d+) of "
                           r"(?P<file>.+?):\s*$")
_AP_OPEN_RE = re.compile(r"Could not open configuration file (?P<file>\S+?):\s*(?P<why>.*)$")


def parse_apachectl(output, expect_syntax_ok=True):
    """``apachectl -t`` (or ``apachectl start``) output -> {"ok", "errors", "line", "file",
    "message", "warnings"}.

    ``ok``: no error, and "Syntax OK" printed (``expect_syntax_ok=False`` for ``apachectl
    start``, which prints nothing when it works). ``line``/``file``/``message``: the first
    syntax error, as "Syntax error on line N of FILE:" and the line after it.
    """
    text = _text(output)
    lines = [ln.rstrip() for ln in text.splitlines()]
    errors, warnings = [], []
    line_no = file_ = message = None
    syntax_ok = False
    i = 0
    while i < len(lines):
        s = lines[i].strip()
        i += 1
        if not s:
            continue
        if s == "Syntax OK":
            syntax_ok = True
            continue
        m = _AP_SYNTAX_RE.search(s)
        if m:
            follow = lines[i].strip() if i < len(lines) else ""
            if follow:
                i += 1
            errors.append(s + (" " + follow if follow else ""))
            if line_no is None:
                line_no, file_, message = int(m.group("line")), m.group("file"), follow or None
            continue
        m = _AP_OPEN_RE.search(s)
        if m:
            errors.append(s)
            if file_ is None:
                file_, message = m.group("file"), m.group("why") or None
            continue
        if re.match(r"^Action '.*' failed\.$", s) or s.startswith("The Apache error log"):
            if errors:
                continue
            errors.append(s)
            continue
        if re.match(r"^AH\d+:", s) or s.lower().startswith(("apache2: ", "httpd: ", "[")):
            if "error" in s.lower() and "AH00558" not in s:
                errors.append(s)
            else:
                warnings.append(s)
    ok = not errors and (syntax_ok or not expect_syntax_ok)
    if not ok and not errors:
        errors.append("apachectl did not print 'Syntax OK'")
    return {"ok": ok, "errors": errors, "line": line_no, "file": file_, "message": message,
            "warnings": warnings, "syntax_ok": syntax_ok}


# --------------------------------------------------------------------------- PostgreSQL log

_PG_LEVELS = ("DEBUG5", "DEBUG4", "DEBUG3", "DEBUG2", "DEBUG1", "DEBUG", "INFO", "NOTICE",
              "WARNING", "ERROR", "LOG", "FATAL", "PANIC", "DETAIL", "HINT", "QUERY",
              "CONTEXT", "LOCATION", "STATEMENT")
_PG_LINE_RE = re.compile(r"^(?P<prefix>.*?)\b(?P<level>%s):  (?P<msg>.*)$" % "|".join(_PG_LEVELS))
_PG_TIME_RE = re.compile(r"(\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:\.\d+)?(?: [A-Z]{2,5}|[+-]\d\d)?)")
_PG_PID_RE = re.compile(r"\[(\d+)\]")
_PG_ATTACH = ("DETAIL", "HINT", "QUERY", "CONTEXT", "LOCATION", "STATEMENT")


def parse_pg_log(text):
    """Every entry of a PostgreSQL server log: [{"level", "message", "time", "pid", "line",
    "detail", "hint", "statement", "context", "prefix"}]; continuation lines (tab-indented)
    are appended to the message, DETAIL/HINT/STATEMENT... lines to the entry before them."""
    entries = []
    field = None  # where continuation lines go: "message" or an attached field
    for raw in _text(text).splitlines():
        if not raw.strip():
            continue
        m = _PG_LINE_RE.match(raw)
        if not m:
            if entries and field and (raw.startswith("\t") or raw.startswith(" ")):
                entries[-1][field] += "\n" + raw.strip()
            continue
        prefix, level, msg = m.group("prefix"), m.group("level"), m.group("msg").rstrip()
        t = _PG_TIME_RE.search(prefix)
        p = _PG_PID_RE.search(prefix)
        pid = int(p.group(1)) if p else None
        if level in _PG_ATTACH and entries and entries[-1]["pid"] == pid:
            field = level.lower()
            entries[-1][field] = msg
            continue
        field = "message"
        entries.append({"level": level, "message": msg, "time": t.group(1) if t else None,
                        "pid": pid, "line": raw.rstrip(), "prefix": prefix.strip()})
    return entries


def _pg_seconds(stamp):
    """Seconds since the epoch of a log line's time ("2026-12-01 06:29:46.970 UTC"), the zone
    ignored (both lines compared come from one server); None if it does not parse."""
    m = re.match(r"(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d)(\.\d+)?", stamp or "")
    if not m:
        return None
    try:
        when = datetime.datetime.strptime(f"{m.group(1)} {m.group(2)}", "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    return when.replace(tzinfo=datetime.timezone.utc).timestamp() + float(m.group(3) or 0)


def _close_in_time(a, b):
    """Two log times within one second of each other (a server that fails on its
    configuration writes the LOG line naming the parameter a millisecond or two before the
    FATAL, sometimes across a second's edge), or equal when they do not parse."""
    sa, sb = _pg_seconds(a), _pg_seconds(b)
    if sa is None or sb is None:
        return a == b
    return abs(sb - sa) < 1.0


def parse_pg_log_errors(text, limit=10, levels=("ERROR", "FATAL", "PANIC")):
    """The last ``limit`` ERROR/FATAL/PANIC entries of a PostgreSQL log (all with limit=None).

    A FATAL that only says the configuration file "contains errors" gets ``cause``: the LOG
    line just before it from the same process and time, which names the bad parameter.
    """
    entries = parse_pg_log(text)
    out = []
    for i, e in enumerate(entries):
        if e["level"] not in levels:
            continue
        prev = entries[i - 1] if i > 0 else None
        if e["level"] == "FATAL" and "configuration file" in e["message"] and prev \
                and prev["level"] == "LOG" and prev["pid"] == e["pid"] \
                and _close_in_time(prev["time"], e["time"]):
            e = dict(e, cause=prev["message"])
        out.append(e)
    if limit is not None:
        out = out[-limit:] if limit > 0 else []
    return out


# --------------------------------------------------------------------------- ha-log

# Heartbeat 2.x ha-log: "crmd[2959]: 2007/12/18_09:06:32 ERROR: ..." (the manual's
# crm_standby line shows the same layout with "info:")
_HB_RE = re.compile(r"^(?:(?P<host>\S+)\s+)?(?P<daemon>[\w.-]+)\[(?P<pid>\d+)\]:\s+"
                    r"(?P<time>\d{4}/\d\d/\d\d_\d\d:\d\d:\d\d)\s+(?P<level>[A-Za-z]+):\s*"
                    r"(?P<msg>.*)$")
# Pacemaker 2.x: "Nov 25 16:49:57.974 db01 pacemaker-schedulerd[89] (fn) \terror: ..."
# (pacemakerd pads its name: "db01 pacemakerd          [67] (fn) \terror: ...")
_PCMK_RE = re.compile(r"^(?P<time>[A-Z][a-z]{2}\s+\d+\s+\d\d:\d\d:\d\d(?:\.\d+)?)\s+"
                      r"(?P<host>\S+)\s+(?P<daemon>[\w.-]+)\s*\[(?P<pid>\d+)\]\s+"
                      r"(?:\((?P<function>[^)]*)\)\s+)?(?P<level>[a-z]+):\s*(?P<msg>.*)$")
_HA_BAD = ("error", "fatal", "crit", "critical", "emerg", "alert")


def parse_ha_log(text, levels=_HA_BAD):
    """ERROR/FATAL/CRIT lines (any case) of Heartbeat's ha-log or Pacemaker's pacemaker.log:
    [{"level" (lower case), "message", "daemon", "pid", "time", "host", "line"}].

    Lines of neither layout are kept when they carry ``ERROR:``/``FATAL:`` in capitals, as
    ``egrep "(ERROR|FATAL)"`` in the manual would."""
    out = []
    for raw in _text(text).splitlines():
        line = raw.rstrip()
        if not line.strip():
            continue
        m = _PCMK_RE.match(line) or _HB_RE.match(line)
        if m:
            level = m.group("level").lower()
            if level not in levels:
                continue
            out.append({"level": level, "message": m.group("msg").strip(),
                        "daemon": m.group("daemon"), "pid": int(m.group("pid")),
                        "time": m.group("time"), "host": m.group("host"), "line": line})
            continue
        m = re.search(r"\b(ERROR|FATAL|CRIT):\s*(.*)$", line)
        if m:
            out.append({"level": m.group(1).lower(), "message": m.group(2).strip(),
                        "daemon": None, "pid": None, "time": None, "host": None, "line": line})
    return out


# --------------------------------------------------------------------------- pg_dumpall / vacuumdb

# modern client messages: "pg_dump: error: ...", "pg_dumpall: detail: ...", "vacuumdb: hint:"
_CLIENT_RE = re.compile(r"^(?P<prog>(?:\S*/)?(?:pg_dumpall|pg_dump|vacuumdb|psql|pg_restore))"
                        r"(?::[^:\s]*:\d+)?:\s+(?P<level>error|fatal|warning|detail|hint):\s*"
                        r"(?P<msg>.*)$")
# pre-10 wording (8.2 of the manual) and other failures worth a look
_OLD_CLIENT_BAD = re.compile(
    r"(SQL command failed|Error message from server|The command was:|could not connect|"
    r"connection to database .* failed|pg_dump failed on database|query failed|"
    r"invalid option|aborting because of|No such file or directory|"
    r"vacuuming of database .* failed|could not (?:open|write|execute))", re.I)
_SERVER_MSG_RE = re.compile(r"(?:^|\s)(?P<level>ERROR|FATAL|PANIC|WARNING):\s+(?P<msg>.*)$")
_PROGRESS = re.compile(r"^(?:\S*/)?(?:pg_dumpall|pg_dump|vacuumdb):\s+(executing|reading|dumping|"
                       r"running|saving|creating|dropping|connecting|identifying|finding|"
                       r"flagging|last built-in|processing|vacuuming|setting|restoring|"
                       r"started|completed)\b", re.I)


def _client_errors(text, warn_levels=()):
    """(errors, warnings, notes) lines from a client tool's stderr. Continuation lines of an
    error (tab-indented, as libpq prints "\\tIs the server running...") stay with it."""
    errors, warnings = [], []
    last = None
    for raw in _text(text).splitlines():
        line = raw.rstrip()
        if not line.strip():
            last = None
            continue
        if raw.startswith("\t") and last is not None:
            last[-1] = last[-1] + " " + line.strip()
            continue
        m = _CLIENT_RE.match(line.strip())
        if m:
            level = m.group("level").lower()
            if level in ("detail", "hint"):
                if last is not None:
                    last[-1] = last[-1] + " | " + line.strip()
                continue
            if level == "warning":
                warnings.append(line.strip())
                last = warnings
            else:
                errors.append(line.strip())
                last = errors
            continue
        if _PROGRESS.match(line.strip()):
            last = None
            continue
        m = _SERVER_MSG_RE.search(line)
        if m:
            if m.group("level") == "WARNING" or m.group("level") in warn_levels:
                warnings.append(line.strip())
                last = warnings
            else:
                errors.append(line.strip())
                last = errors
            continue
        if re.match(r"^(DETAIL|HINT):\s", line.strip()) and last is not None:
            last[-1] = last[-1] + " | " + line.strip()
            continue
        if _OLD_CLIENT_BAD.search(line):
            errors.append(line.strip())
            last = errors
            continue
        last = None
    return errors, warnings


def parse_pg_dumpall_log(text):
    """The stderr of ``pg_dumpall -v`` -> {"ok", "errors", "warnings", "databases"}.

    ``errors``: lines such as ``pg_dump: error: query failed: ERROR: ...``, ``pg_dumpall:
    error: connection to server ... failed`` (with their detail/hint), the 8.2 wording
    (``pg_dump: SQL command failed``, ``pg_dumpall: could not connect ...``), and ``invalid
    option`` (``-o`` no longer exists since PostgreSQL 12). ``databases``: the databases
    pg_dumpall started dumping, in order. ``ok``: no error line.
    """
    errors, warnings = _client_errors(text)
    databases = re.findall(r'^pg_dumpall: dumping database "([^"]+)"', _text(text), re.M)
    return {"ok": not errors, "errors": errors, "warnings": warnings, "databases": databases}


def parse_vacuumdb_log(text):
    """The output of ``vacuumdb -a -f -z -v`` (stderr, or both streams) -> {"ok", "errors",
    "warnings", "databases", "tables"}.

    ``warnings``: lines like ``WARNING: skipping "t1" --- only table or database owner can
    vacuum it`` (the job ran, but not on everything). ``tables``: how many relations were
    vacuumed (``INFO: vacuuming "schema.table"``). ``databases``: from ``vacuumdb: vacuuming
    database "x"`` lines when stdout is included.
    """
    t = _text(text)
    errors, warnings = _client_errors(t)
    databases = re.findall(r'^vacuumdb: vacuuming database "([^"]+)"', t, re.M)
    tables = len(re.findall(r'^INFO:\s+vacuuming "', t, re.M))
    return {"ok": not errors, "errors": errors, "warnings": warnings, "databases": databases,
            "tables": tables}


def _pgpool_n_errors(text):
    """ERROR/FATAL lines of pgpool -n output."""
    return [e for e in parse_pgpool_check(text)["errors"]
            if not e.startswith("pgpool did not print")]


def parse_pgpool_check_script(text):
    """The output of pgpool.check's script (pgpool -n with "@@result", "@@rc" and "@@port"
    lines) -> {"ok", "result", "rc", "errors", "output"}."""
    result, rc, lines = None, None, []
    for line in (text or "").splitlines():
        if line.startswith("@@result "):
            result = line.split(None, 1)[1].strip()
        elif line.startswith("@@rc "):
            rc = line.split(None, 1)[1].strip()
        elif line.startswith("@@port "):
            continue
        else:
            lines.append(line)
    errors = _pgpool_n_errors("\n".join(lines))
    if result == "missing":
        errors = errors or ["configuration file missing"]
    ok = result == "started" and not errors
    if result == "timeout" and not errors:
        errors = ["pgpool neither started nor failed within the wait"]
    if result == "exited" and not errors:
        tail = [ln.strip() for ln in lines if ln.strip()]
        errors = [tail[-1] if tail else f"pgpool exited with status {rc}"]
    return {"ok": ok, "result": result, "rc": rc, "errors": errors, "output": "\n".join(lines)}
