"""The newest-data rule: record which backend holds the newest data before pgpool or the DB
stack stops (the runbook's bold warning), so a later resync knows its source.

It is policy, not part of any one tool: whatever stops pgpool or a DB node applies the same
rule. The record itself lives in the journal (``journal.record_newest``).
"""

import sys

from hatasks import backends, journal
from hatasks.errors import HaError, StateError


def record_newest(ctx, cluster, reason, data=None):
    """Journal which backend holds the newest data, read from SHOW pool_nodes now (DATA: a
    read_pool_nodes answer the caller has just read, not read again).

    Degenerated: the backend still up. All up: they are in sync, the record says so (newest =
    the main backend, evidence in_sync=True), unless a backend was attached without a resync
    (journal.stale_attached): then in_sync=False, newest = a backend not stale. pgpool not answering: nothing new can be known;
    returns {"recorded": False, "error", "previous"} and the earlier record stays the reference.
    """
    c = backends.pgpool_cluster(ctx, cluster)
    try:
        data = data or backends.read_pool_nodes(ctx, c.name)
    except HaError as exc:
        return {"recorded": False, "error": exc.message, "previous": journal.newest(ctx, c.name)}
    up = backends.up(data)
    evidence = dict(backends.evidence(data), reason=reason)
    if not up:
        return {"recorded": False, "error": "pgpool has no backend up",
                "previous": journal.newest(ctx, c.name)}
    stale = journal.stale_attached(ctx, c.name)
    if data.get("degenerated"):
        host = data.get("newest") or up[0].get("host")
        evidence["in_sync"] = False
    elif stale:
        # every backend up, but one was attached without a resync (pgpool.attach --force) and
        # nothing proved it equal since: not in sync; the newest data is on the others
        fresh = [b.get("host") for b in up if b.get("host") not in stale]
        host = fresh[0] if fresh else (data.get("main") or up[0].get("host"))
        evidence["in_sync"] = False
        evidence["stale_attach"] = stale
    else:
        host = data.get("newest") or data.get("main") or up[0].get("host")
        evidence["in_sync"] = True
    rec = journal.record_newest(ctx, c.name, host, evidence)
    return {"recorded": rec is not None, "newest": host, "evidence": evidence, "record": rec}


def record_before_stop(ctx, cluster, host_name, force):
    """Record the newest-data backend before the DB stack stops on HOST_NAME.

    When pgpool cannot tell, an earlier record stays the reference; with no record at all the
    stop is refused (StateError) unless FORCE. Returns record_newest's dict.
    """
    try:
        result = record_newest(ctx, cluster, f"hb.stop --host {host_name}")
    except HaError as exc:
        result = {"recorded": False, "error": exc.message, "previous": None}
    result = result or {}
    if result.get("recorded"):
        sync = (result.get("evidence") or {}).get("in_sync")
        note = {True: " (backends in sync)", False: " (pgpool degenerated)"}.get(sync, "")
        print(f"newest-data backend recorded: {result.get('newest')}{note}", flush=True)
        return result
    previous = result.get("previous")
    why = result.get("error") or "pgpool gave no answer"
    if previous:
        print(f"warning: newest-data backend not recorded now ({why}); the earlier record stays "
              f"the reference: {previous.get('newest')} at {previous.get('ts')}",
              file=sys.stderr, flush=True)
        return result
    if not force:
        raise StateError(f"cannot record the newest-data backend before stopping {host_name}: "
                         f"{why}, and no earlier record exists (--force to stop anyway)")
    print(f"warning: newest-data backend NOT recorded ({why}); stopping anyway (--force)",
          file=sys.stderr, flush=True)
    return result
