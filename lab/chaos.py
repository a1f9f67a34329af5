"""`inv lab.chaos`: a chaos rehearsal on a running lab.

A workload writes through the DB VIP while the seeded plan (lab/chaos_plan.py) injects faults,
interrupts hatasks tasks and acts as an operator; then the run heals what needs a human (power,
cable, config: `lab.heal`) and runs `db.recover --yes` / `lb.recover --yes` until the clusters
are healthy or the tool says a human must decide. After every step the invariants
(lab/chaos_check.py) are checked on what was observed. hatasks is driven only through `inv`
subprocesses with the instance's inventory and the run's own state dir, as an operator drives it.

Files of a run, in lab/.state/N/chaos/seed-S-<time>/: acked.txt (acknowledged ids), log.txt
(every command and its output's tail), report.txt, state/ (the hatasks state dir: journal, lock).
"""

import datetime
import os
import re
import signal
import time

from .base import DB_HOSTS, HOSTS, LB_HOSTS, LabError
from .chaos_check import (check_diagnosis, check_interrupt, check_lb, check_recover, check_writes,
                          diagnosis_healthy, final_line, format_violation, once_per_step,
                          report_lines)
from .chaos_plan import describe, draw_plan, fault_kinds_drawn
from .chaos_probe import Operator, Truth, Workload

RECOVER_TIMEOUT = 60  # --timeout given to db.recover / lb.recover
RECOVER_LIMIT = 12 * RECOVER_TIMEOUT + 180  # at most MAX_STEPS waits, plus the work itself
RECOVER_ROUNDS = 3
GRACE = 15  # seconds a cluster may take to settle after recover said done


class Chaos:
    def __init__(self, lab, seed, steps, kinds, duration=None, out=print):
        self.lab = lab
        self.seed = seed
        self.plan = draw_plan(seed, steps, kinds)
        self.duration = duration
        self.out = out
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.dir = lab.state / "chaos" / f"seed-{seed}-{stamp}"
        self.violations = []
        self.times = []
        self.notes = []
        self.lost = set()
        self.acked_total = 0
        self.epoch = 0
        self.step_n = 0
        self.human = []  # things the chaos operator did that a human must undo
        self.truth = Truth(lab)
        self.aborted = False
        self.reported = set()
        self.counted = set()  # (step, invariant, what) already counted

    # ---- output ------------------------------------------------------------------------------
    def log(self, msg):
        line = f"[{datetime.datetime.now():%H:%M:%S}] {msg}"
        with open(self.dir / "log.txt", "a") as f:
            f.write(line + "\n")

    def say(self, msg):
        self.out(f"chaos step {self.step_n}: {msg}", flush=True)
        self.log(f"step {self.step_n}: {msg}")

    def add(self, vs):
        new, repeated = once_per_step(self.step_n, vs, self.counted)
        for v in new + repeated:
            v["step"] = self.step_n
        for v in new:
            self.violations.append(v)
            self.out(format_violation(self.seed, v, 400), flush=True)
            self.log(format_violation(self.seed, v))
        for v in repeated:  # seen again in the same step: logged, counted once
            self.log("again: " + format_violation(self.seed, v))

    # ---- the run -----------------------------------------------------------------------------
    def dry_run(self):
        for s in self.plan:
            self.out(f"step {s['n']:3}: {s['kind']:9} {describe(s)}")
        self.out(f"[dry] plan of seed {self.seed}: {len(self.plan)} steps; nothing done")

    def new_epoch(self):
        self.epoch += 1
        self.op = Operator(self.lab, self.dir / f"state-{self.epoch}", self.log)
        prefix = f"s{self.seed}e{self.epoch}"
        self.work = Workload(self.lab, self.dir / "acked.txt", prefix)
        self.work.ensure_table()
        self.work.start()

    def run(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        problems = self.lab.problems()
        if problems:
            raise LabError("the lab is not healthy before the rehearsal: " + "; ".join(problems)
                           + " (inv lab.up)")
        self.out(f"chaos: seed {self.seed}, {len(self.plan)} steps, files in {self.dir}")
        self.new_epoch()
        t0 = time.monotonic()
        try:
            for step in self.plan:
                if self.duration and time.monotonic() - t0 > self.duration:
                    self.notes.append(f"--duration {self.duration}s reached before step {step['n']}")
                    break
                self.step_n = step["n"]
                self.say(f"{step['kind']}: {describe(step)}")
                try:
                    self.one_step(step)
                except LabError as exc:
                    self.say(f"lab error: {exc.message[:300]}")
                    self.notes.append(f"step {self.step_n}: lab error: {exc.message[:300]}")
                    self.reset("lab error")
        except KeyboardInterrupt:
            self.aborted = True
            self.notes.append(f"run interrupted at step {self.step_n}")
            self.out(f"chaos: interrupted at step {self.step_n}", flush=True)
            self.op.interrupt_current()
        except (LabError, OSError) as exc:
            self.aborted = True
            self.notes.append(f"run aborted at step {self.step_n}: {exc}"[:400])
            self.out(f"chaos: run aborted at step {self.step_n}: {exc}", flush=True)
        finally:
            self.close_epoch()
        return self.report()

    def one_step(self, step):
        try:
            self.execute(step)
        except LabError as exc:
            self.notes.append(f"step {self.step_n}: lab error while acting: {exc.message[:200]}")
            self.say(f"lab error: {exc.message[:200]}")
        self.check_diagnosis("after the step")
        self.heal()
        took = self.recover()
        if took is None:
            self.reset("not recovered")
            return
        self.times.append(took)
        self.say(f"healthy after {took:.1f}s")
        self.check_after()

    # ---- acting ------------------------------------------------------------------------------
    def resolve(self, host):
        active = self.truth.active("db") or "db01"
        if host == "active":
            return active
        if host == "passive":
            return [h for h in DB_HOSTS if h != active][0]
        return host

    def task_args(self, task, method=None):
        """The command line of an interruptible/long task, hosts resolved now."""
        act, pas = self.resolve("active"), self.resolve("passive")
        if task == "db.failover":
            return ["db.failover", "--yes"]
        if task == "sync.resync":
            return ["sync.resync", "--method", method or "dump", "--source", act, "--target", pas,
                    "--force", "--yes"]
        if task == "db.recover":
            self.lab.fault(pas, "postgres")  # something to recover from
            return ["db.recover", "--yes"]
        if task == "pgpool.stop":
            return ["pgpool.stop", "--host", act, "--yes"]
        if task == "pgpool.switch":
            return ["pgpool.switch", "--node", pas, "--yes"]
        raise ValueError(task)

    def execute(self, step):
        k = step["kind"]
        if k in ("fault", "double"):
            for host, kind in step["faults"]:
                self.lab.fault(host, kind)
        elif k == "reboot":
            self.lab.reboot(step["host"])
        elif k == "during":
            args = self.task_args(step["op"], step.get("method"))
            t0 = time.monotonic()
            proc = self.op.start(args)
            time.sleep(step["delay"])
            for host, kind in step["faults"]:
                self.lab.fault(host, kind)
            rc, _, _, _ = self.op.finish(proc, t0)
            self.check_lock_free(f"after {step['op']} (exit {rc})")
        elif k == "interrupt":
            self.interrupt(step)
        else:
            self.operator(step)

    def interrupt(self, step):
        args = self.task_args(step["task"], step.get("method"))
        t0 = time.monotonic()
        proc = self.op.start(args)
        time.sleep(step["delay"])
        if proc.poll() is None:
            if step["signal"] == "INT":  # Ctrl-C: the terminal signals the foreground group
                os.killpg(proc.pid, signal.SIGINT)
            else:  # kill -9 PID
                os.kill(proc.pid, signal.SIGKILL)
            self.say(f"SIG{step['signal']} sent to {step['task']} (pid {proc.pid})")
        else:
            self.say(f"{step['task']} ended before the signal (exit {proc.returncode})")
        self.op.finish(proc, t0, timeout=300)
        time.sleep(1)
        lock = self.op.lock("db")
        _, _, diag_text = self.op.json("db.diagnose")
        records = self.op.records(pid=proc.pid)
        self.add(check_interrupt(step["task"], step["signal"], records, lock, diag_text))
        if lock and not lock["alive"]:
            self.notes.append(f"step {self.step_n}: lock held after pid {lock['pid']} died,"
                              f" holders {lock['holders']}")

    def crm(self, cluster, script):
        hosts = DB_HOSTS if cluster == "db" else LB_HOSTS
        seen_from, _ = self.truth.mon(hosts)
        if seen_from is None:
            raise LabError(f"no node of the {cluster} cluster answers")
        self.log(f"{seen_from}# {script}")
        proc = self.lab.hrun(seen_from, script, check=False, timeout=60)
        self.log(f"  -> exit {proc.returncode} {(proc.stdout + proc.stderr).strip()[:300]}")
        return proc

    def operator(self, step):
        a = step["action"]
        if a == "hb.standby":
            self.op.run("hb.standby", "--node", step["node"], "--yes")
        elif a == "pgpool.switch":
            self.op.run("pgpool.switch", "--node", step["node"], "--yes")
        elif a == "pgpool.stop":
            self.op.run("pgpool.stop", "--host", self.resolve("active"), "--yes")
        elif a == "db.maintenance":
            rc, _, _ = self.op.run("db.maintenance", "--host", step["host"], "--for", step["for"],
                                   "--yes")
            if rc == 0 and step["for"] == "reboot":
                self.lab.reboot(step["host"])
        elif a == "maintenance-mode":
            self.crm(step["cluster"], "crm_attribute -t crm_config -n maintenance-mode -v true")
            self.human.append(("maintenance-mode", step["cluster"]))
        elif a == "crm-move":
            cluster = "db" if step["group"] == "grp-pgpool" else "lb"
            self.crm(cluster, f"crm_resource --move -r {step['group']} --force 2>&1 || "
                     f"crm_resource --move -r {step['group']}")
        self.check_lock_free(f"after {a}")

    # ---- the human's part and the recovery --------------------------------------------------
    def powered_off(self):
        """Hosts that are off now: the ones a fault turned off, and the ones fencing did."""
        return {h for h in HOSTS if self.lab.pid1(h) is None}

    def heal(self):
        for host in sorted(set(self.lab.faults()) | self.powered_off()):
            self.say(f"operator heals {host} (lab.heal)")
            try:
                self.lab.heal(host)
            except LabError as exc:
                self.notes.append(f"step {self.step_n}: lab.heal {host}: {exc.message[:200]}")

    def human_decides(self, output):
        """What the chaos operator does when recover says a human must act. True when it did
        something (run recover again)."""
        did = False
        for what, cluster in list(self.human):
            if what == "maintenance-mode":
                self.say(f"operator ends maintenance mode of the {cluster} cluster")
                self.crm(cluster, "crm_attribute -t crm_config -n maintenance-mode -v false")
                self.human.remove((what, cluster))
                did = True
        if did:
            return True
        off = self.powered_off()
        if off and "power on" in output:  # fenced after the heal: the human powers it on
            self.heal()
            return True
        if "--source" in output and re.search(r"split.brain", output, re.I):
            return self.decide_split_brain(output)
        return False

    def decide_split_brain(self, output):
        """Choose the backend holding most acknowledged writes; check the others are kept."""
        acked = set(self.work.acked)
        seen = {h: (self.truth.ids_on(h, self.work.prefix) or set()) for h in DB_HOSTS}
        source = max(DB_HOSTS, key=lambda h: len(seen[h] & acked))
        self.say(f"operator decides the split brain: --source {source}")
        # every decision's output is kept: the places an earlier split brain named (its kept
        # data dir, its salvage file) still hold its loser's writes (a later decision
        # forgot them, and seed 41 step 34 counted an earlier step's writes lost)
        self.split_output = getattr(self, "split_output", "") + "\n" + output
        rc, out, _ = self.op.run("db.recover", "--source", source, "--yes",
                                 "--timeout", str(RECOVER_TIMEOUT))
        self.split_output += "\n" + out
        return True

    def kept_places(self, missing):
        """Ids among `missing` found in the places recover's output named (kept data dirs,
        salvage files): {"host:path": ids}."""
        text = getattr(self, "split_output", "")
        out = {}
        named = re.findall(r"(/[\w./-]*(?:salvage|data\.[\d-]{8,}|hatasks-resync/[\d-]{8,})[\w./-]*)",
                           text)
        for path in sorted(set(named)):
            for h in DB_HOSTS:
                found = self.truth.grep_ids(h, path, missing)
                if found:
                    out[f"{h}:{path}"] = found
        return out

    def recover(self):
        """db.recover then lb.recover until both clusters are healthy: seconds taken, or None."""
        t0 = time.monotonic()
        for _ in range(RECOVER_ROUNDS):
            stuck = False
            for name, cluster in (("db.recover", "db"), ("lb.recover", "lb")):
                rc, out, took = self.op.run(name, "--yes", "--timeout", str(RECOVER_TIMEOUT))
                self.work.pause()
                problems = self.truth.wait_healthy(cluster, GRACE if rc == 0 else 0)
                if rc == 0 and cluster == "db" and not problems:
                    cmp_ = self.db_truth(with_compare=True)
                    if cmp_["compare_equal"] is False:
                        problems = ["pg.compare finds a difference: " + cmp_["compare_evidence"]]
                self.work.resume()
                self.add(check_recover(name, rc, took, RECOVER_LIMIT, problems, out))
                self.check_lock_free(f"after {name}")
                if rc == 3 and not self.human_decides(out):
                    stuck = True
                if rc == 6:  # it waited its timeout already: another round waits again
                    stuck = True
            if not self.truth.problems("db") and not self.truth.problems("lb"):
                return time.monotonic() - t0
            if stuck:
                self.say("recover gave up (a human must decide, or it waited in vain)")
                return None
        return None

    def reset(self, why):
        """Recovery did not end healthy: an operator repairs by hand; failing that, lab.up."""
        self.say(f"{why}: db {self.truth.problems('db')}; lb {self.truth.problems('lb')}")
        self.notes.append(f"step {self.step_n}: {why}: {self.truth.problems('db')}"
                          f" {self.truth.problems('lb')}")
        for cluster in ("db", "lb"):
            if self.truth.mon(DB_HOSTS if cluster == "db" else LB_HOSTS)[0] is None:
                continue
            self.crm(cluster, "crm_attribute -t crm_config -n maintenance-mode -v false; "
                     "for r in grp-pgpool grp-apache; do crm_resource --clear -r $r; done; "
                     "for n in $(crm_node -l | awk '{print $2}'); do "
                     "crm_attribute -N $n -n standby -v off; crm_attribute -N $n -n maintenance -D;"
                     " done; for r in pgpool grp-pgpool apache grp-apache; do "
                     "crm_resource -r $r --meta -d maintenance; crm_resource -r $r --meta -d "
                     "is-managed; crm_resource -r $r --meta -d target-role; done 2>/dev/null; "
                     "crm_resource --cleanup")
        self.human.clear()
        if self.resync_unfinished():
            # the operator knows hatasks: an unfinished resync is resumed from the journal
            self.say("operator resumes the unfinished resync (sync.resume)")
            self.op.run("sync.resume", "--yes")
        time.sleep(10)
        if self.recover() is not None:
            self.say("healthy after the operator's repair by hand")
            self.check_after()
            return
        self.close_epoch()
        self.say("rebuilding the lab (lab.up): a new epoch of writes")
        self.notes.append(f"step {self.step_n}: lab rebuilt")
        self.lab.up(fencing=self.lab.fencing_on())  # the same lab: with fencing if it had it
        self.new_epoch()

    def resync_unfinished(self):
        """The journal's last sync.resync operation started and did not end with done."""
        last = None
        for r in self.op.records():  # by itself or inside db.recover (nested)
            if r.get("action") == "sync.resync":
                if r.get("event") in ("start", "checkpoint"):
                    last = "begun"
                elif r.get("event") == "done":
                    last = "done"
        return last == "begun"

    # ---- checking ----------------------------------------------------------------------------
    def check_lock_free(self, when):
        lock = self.op.lock("db")
        if lock and not lock["alive"]:
            self.add([{"invariant": 4, "what": f"lock held by a dead process {when}",
                       "evidence": f"pid {lock['pid']} {lock['action']}; open by {lock['holders']}"}])

    def db_truth(self, with_compare):
        truth = {"nodes": self.truth.nodes("db"), "pool": self.truth.pool(),
                 "compare_equal": None, "compare_evidence": ""}
        if with_compare:
            _, cmp_, cout = self.op.json("pg.compare", "--format", "json")
            truth["compare_equal"] = None if cmp_ is None else bool(cmp_.get("equal"))
            truth["compare_evidence"] = str((cmp_ or {}).get("differences", cout[-200:]))[:300]
        return truth

    def check_diagnosis(self, when):
        """Invariant 2. The lab's view is read before and after db.diagnose: only a verdict
        wrong against both (a state that held still while diagnose read it) is a violation."""
        self.work.pause()
        try:
            before = self.db_truth(with_compare=False)
            _, diag, _ = self.op.json("db.diagnose", "--format", "json")
            if not diagnosis_healthy(diag):
                return
            after = self.db_truth(with_compare=True)
            before["compare_equal"] = after["compare_equal"]
            before["compare_evidence"] = after["compare_evidence"]
            vs = check_diagnosis(diag, after)
            if vs and check_diagnosis(diag, before):
                vs[0]["evidence"] += f" ({when}; diagnose said {diag.get('pattern')!r})"
                self.add(vs)
        finally:
            self.work.resume()

    def check_writes(self):
        pool = self.truth.pool() or []
        up = {h for _, h, s in pool if s == "up"}
        acked = set(self.work.acked)
        seen = {}
        for h in DB_HOSTS:
            ids = self.truth.ids_on(h, self.work.prefix)
            if ids is not None:
                seen[h] = ids
        missing = acked - set().union(*seen.values()) if seen else acked
        kept = self.kept_places(missing) if missing else {}
        vs, lost = check_writes(acked, seen, up, kept)
        # a write missing on a backend is reported once, at the step that lost it
        vs = [v for v in vs if not set(v.get("ids", ())) <= self.reported]
        for v in vs:
            self.reported |= set(v.get("ids", ()))
        self.add(vs)
        unread = [h for h in DB_HOSTS if h not in seen]
        if unread and lost:
            # a backend that cannot be read may hold them: not proven lost, said as such
            self.notes.append(f"step {self.step_n}: {len(lost)} acknowledged write(s) on no "
                              f"readable backend ({', '.join(unread)} unreadable), e.g. "
                              f"{sorted(lost)[:3]}")
            self.say(self.notes[-1])
            return
        new = lost - self.lost
        if new:
            self.say(f"{len(new)} acknowledged write(s) lost, e.g. {sorted(new)[:5]}")
        self.lost |= lost

    def check_after(self):
        self.work.pause()
        try:
            self.check_writes()
            online = {h for h, s in self.truth.nodes("lb").items() if s == "online"}
            self.add(check_lb(self.truth.lb_page(), self.truth.apache_hosts(), online))
        finally:
            self.work.resume()
        self.check_diagnosis("after recovery")

    def close_epoch(self):
        work = getattr(self, "work", None)
        if work is None:
            return
        work.pause()
        try:
            self.check_writes()
        except LabError as exc:
            self.notes.append(f"writes of epoch {self.epoch} not checked: {exc.message[:200]}")
        work.stop()
        self.acked_total += len(work.acked)
        self.work = None

    def report(self):
        lines = report_lines(self.seed, self.step_n, fault_kinds_drawn(self.plan[:self.step_n]),
                             self.times, self.acked_total, self.lost, self.violations, self.notes)
        (self.dir / "report.txt").write_text("\n".join(lines) + "\n")
        for line in lines:
            self.out(line, flush=True)
        return final_line(self.step_n, len(self.violations), len(self.lost), self.acked_total,
                          self.seed), bool(self.violations or self.lost or self.aborted)
