"""The chaos rehearsal's invariants and report: pure functions of recorded observations.

Each check takes what the runner observed (ids read from the backends, a diagnosis, the lab's
own view of the clusters, journal records, the lock, the LB page) and returns a list of
violations: dicts {"invariant", "what", "evidence"}; the runner adds seed and step.
"""

import re
import statistics

INVARIANTS = {
    1: "every acknowledged write is on every backend pgpool reports up",
    2: "db.diagnose never says healthy while the cluster is not",
    3: "recover exits 0 only on a healthy cluster and never waits for what cannot come",
    4: "an interrupted task leaves a journal entry telling the next step; no lock held by the dead",
    5: "the LB VIP answers from a node running Apache whenever one is online",
}


def violation(inv, what, evidence):
    return {"invariant": inv, "what": what, "evidence": evidence}


# --------------------------------------------------------------------------- (1) writes


def check_writes(acked, on_backend, up_hosts, kept=None):
    """acked: ids acknowledged to the client; on_backend: {host: set of ids read directly};
    up_hosts: hosts pgpool reports up; kept: {place: set of ids} found in the places the tool
    named after a split brain (kept data directory, salvage file). Returns (violations, lost):
    an acknowledged id missing from an up backend and kept nowhere is a violation; it is lost
    when it is on no backend and in no kept place."""
    acked = set(acked)
    kept = kept or {}
    in_kept = set().union(*kept.values()) if kept else set()
    out = []
    for h in sorted(up_hosts):
        if h not in on_backend:
            out.append(violation(1, f"{h} is up in pgpool but could not be read", ""))
            continue
        missing = acked - on_backend[h] - in_kept
        if missing:
            v = violation(1, f"{len(missing)} acknowledged write(s) missing on {h} (up in pgpool)",
                          f"e.g. {sorted(missing)[:5]}")
            v["ids"] = sorted(f"{h}:{i}" for i in missing)
            out.append(v)
    everywhere = set().union(*on_backend.values()) if on_backend else set()
    lost = acked - everywhere - in_kept
    return out, lost


# --------------------------------------------------------------------------- (2) diagnosis


def diagnosis_healthy(diag):
    """A db.diagnose/lb.diagnose JSON (or None when it gave none) says healthy."""
    return bool(diag) and diag.get("pattern") == "healthy"


def check_diagnosis(diag, truth):
    """diag: db.diagnose's JSON; truth: the lab's own view: {"nodes": {host: online|standby|
    offline}, "pool": [(id, host, status)] or None, "compare_equal": bool or None,
    "compare_evidence": str}. A healthy verdict with anything wrong in the truth is a violation."""
    if not diagnosis_healthy(diag):
        return []
    wrong = []
    for h, s in sorted(truth.get("nodes", {}).items()):
        if s != "online":
            wrong.append(f"{h} is {s}")
    pool = truth.get("pool")
    if pool is None:
        wrong.append("pgpool does not answer through the DB VIP")
    else:
        down = [f"{h}={s}" for _, h, s in pool if s != "up"]
        if down:
            wrong.append("pgpool degenerated: " + ", ".join(down))
    if truth.get("compare_equal") is False:
        wrong.append("pg.compare finds a difference: " + truth.get("compare_evidence", ""))
    if not wrong:
        return []
    return [violation(2, "db.diagnose says healthy", "; ".join(wrong))]


# --------------------------------------------------------------------------- (3) recover


def check_recover(name, rc, elapsed, limit, problems, output):
    """name: db.recover or lb.recover; rc: its exit code; elapsed: seconds it ran; limit: the
    most it may take (steps x timeout); problems: the lab's health problems right after
    (for this cluster; [] healthy); output: what it printed (for the evidence)."""
    out = []
    tail = " | ".join(line for line in output.strip().splitlines()[-3:])
    if rc == 0 and problems:
        out.append(violation(3, f"{name} exited 0 with the cluster unhealthy",
                             "; ".join(problems) + f" | output: {tail}"))
    if rc == 6:
        out.append(violation(3, f"{name} waited for a state that did not come (exit 6)",
                             f"{elapsed:.0f}s | {tail}"))
    if elapsed > limit:
        out.append(violation(3, f"{name} ran {elapsed:.0f}s, past its limit {limit:.0f}s", tail))
    return out


# --------------------------------------------------------------------------- (4) interrupts

NEXT_STEP_WORDS = ("sync.resume", "sync.rollback")


def check_interrupt(task, signal, records, lock, diag_text):
    """task: the interrupted task; signal: INT|KILL; records: its journal records (those with
    its pid, oldest first); lock: None (free) or {"pid", "alive", "action"} (held);
    diag_text: db.diagnose's text output after the interrupt."""
    out = []
    if lock is not None and not lock.get("alive", True):
        out.append(violation(4, "the lock is held by a dead process",
                             f"holder pid {lock.get('pid')} running {lock.get('action')}"))
    events = [r.get("event") for r in records if r.get("action") == task]
    started = "start" in events
    ended = any(e in ("done", "failed", "refused") for e in events)
    if signal == "INT" and started and not ended:
        out.append(violation(4, f"{task} interrupted by SIGINT left no failed/done record",
                             f"events {events}"))
    # a resync, run by itself or inside db.recover, stopped after a checkpoint
    resync = [r for r in records if r.get("action") == "sync.resync"]
    checkpoints = [r.get("step") for r in resync if r.get("event") == "checkpoint"]
    finished = any(r.get("event") == "done" for r in resync)
    if checkpoints and not finished:
        if not any(w in diag_text for w in NEXT_STEP_WORDS):
            out.append(violation(
                4, f"{task} interrupted in a resync after a checkpoint: db.diagnose does not name"
                " sync.resume or sync.rollback",
                f"last checkpoint {checkpoints[-1]!r}; diagnose: {diag_text.strip()[:300]}"))
    return out


# --------------------------------------------------------------------------- (5) LB


def check_lb(page_host, apache_hosts, online_hosts):
    """page_host: the host the LB VIP's page names (None: no answer); apache_hosts: LB hosts
    where Apache runs; online_hosts: LB hosts online in the cluster."""
    if not online_hosts or not apache_hosts:
        return []
    if page_host is None:
        return [violation(5, "the LB VIP does not answer",
                          f"online {sorted(online_hosts)}, Apache on {sorted(apache_hosts)}")]
    if page_host not in apache_hosts:
        return [violation(5, f"the LB VIP answers from {page_host}, which runs no Apache",
                          f"Apache on {sorted(apache_hosts)}")]
    return []


# --------------------------------------------------------------------------- counting


def once_per_step(step, vs, counted):
    """(new, repeated): the violations of `vs` not yet counted at `step`, and those already
    counted (the same invariant and the same finding: a recover that waits in vain in each
    round, a dead lock seen after every command). `counted` is updated with the new ones."""
    new, repeated = [], []
    for v in vs:
        key = (step, v["invariant"], v["what"])
        if key in counted:
            repeated.append(v)
        else:
            counted.add(key)
            new.append(v)
    return new, repeated


# --------------------------------------------------------------------------- the report


def format_violation(seed, v, width=None):
    evidence = " ".join(str(v["evidence"]).split())
    if width and len(evidence) > width:
        evidence = evidence[:width] + "..."
    return (f"VIOLATION seed={seed} step={v.get('step')} invariant {v['invariant']}: "
            f"{v['what']} [{evidence}]")


def recovery_stats(times):
    if not times:
        return "no recovery timed"
    return (f"min {min(times):.1f}s, median {statistics.median(times):.1f}s, "
            f"max {max(times):.1f}s over {len(times)}")


def report_lines(seed, steps_done, drawn, times, acked, lost, violations, notes=()):
    """The run's report; the last line is the one CI and people grep."""
    lines = [f"chaos report, seed {seed}", f"steps run: {steps_done}", "drawn:"]
    lines += [f"  {k}: {n}" for k, n in drawn.items()]
    lines.append(f"time to recover: {recovery_stats(times)}")
    lines.append(f"writes: {acked} acknowledged, {len(lost)} lost"
                 + (f" (e.g. {sorted(lost)[:5]})" if lost else ""))
    lines += [f"note: {n}" for n in notes]
    lines.append(hand_line(notes))
    lines.append(f"violations: {len(violations)}")
    lines += ["  " + format_violation(seed, v, 400) for v in violations]
    lines.append(final_line(steps_done, len(violations), len(lost), acked, seed))
    return lines


def hand_line(notes):
    """How many steps hatasks did not bring back by itself (the notes the run left): recover
    ended unhealthy without a human decision the tool named, then the operator repaired by
    hand, and of those how many needed the lab rebuilt. Not an invariant; stricter than one."""
    repaired = {n.split(":")[0] for n in notes if re.match(r"step \d+: (not recovered|lab error)", n)}
    rebuilt = {n.split(":")[0] for n in notes if re.match(r"step \d+: lab rebuilt", n)}
    return f"steps not recovered by hatasks alone: {len(repaired)} (lab rebuilt: {len(rebuilt)})"


def final_line(steps, nviol, nlost, acked, seed):
    return f"chaos: {steps} steps, {nviol} violations, {nlost} lost writes ({acked} acknowledged), seed {seed}"
