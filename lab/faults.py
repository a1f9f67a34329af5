"""lab.fault and lab.heal: inject one runbook failure into a host (power, network, heartbeat,
pgpool, postgres, httpd), record it in faults.json, and undo what was injected. Heal never repairs
the cluster: repairing it is the job of the runbook tasks under test."""

import datetime
import os
import shutil
import signal

from hatasks.errors import StateError, UsageError

from .base import DB_HOSTS, FAULT_KINDS, LB_HOSTS, PGDATA, sh, wait_until
from .hosts import LabHosts


class LabFaults(LabHosts):
    """Fault injection and healing on lab instance N."""

    # ---- the fault record and config backups ---------------------------------------------
    def record_fault(self, host, kind):
        faults = self.faults()
        faults.setdefault(host, [])
        if not any(f["kind"] == kind for f in faults[host]):
            faults[host].append(
                {"kind": kind, "at": datetime.datetime.now().isoformat(timespec="seconds")}
            )
        self.write_json("faults.json", faults)

    def backup(self, host, path):
        dst = self.hostdir(host) / "fault-backup" / path.lstrip("/").replace("/", "__")
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(self.fs(host, path), dst)
        return dst

    def restore(self, host, path):
        src = self.hostdir(host) / "fault-backup" / path.lstrip("/").replace("/", "__")
        if src.exists():
            shutil.copy2(src, self.fs(host, path))
            src.unlink()
            return True
        return False

    # ---- killing inside a host -----------------------------------------------------------
    # match the executable's name (comm is truncated to 15 chars and scripts share names)
    KILL_BY_NAME = (
        "for d in /proc/[0-9]*; do e=$(readlink $d/exe 2>/dev/null) || continue; "
        'case " $NAMES " in *" ${e##*/} "*) kill -9 ${d#/proc/} 2>/dev/null;; esac; done'
    )

    def kill_in_host(self, host, names):
        """SIGKILL every process of these names inside the host's own PID namespace."""
        self.hrun(host, f"NAMES='{' '.join(names)}'; {self.KILL_BY_NAME}", check=False)

    # ---- inject and undo -----------------------------------------------------------------
    def fault(self, host, kind):
        self.check_host(host)
        if kind not in FAULT_KINDS:
            raise UsageError(f"unknown fault kind {kind!r} (known: {', '.join(FAULT_KINDS)})")
        if kind in ("pgpool", "postgres") and host not in DB_HOSTS:
            raise UsageError(f"fault {kind} applies to DB hosts only ({', '.join(DB_HOSTS)})")
        if kind == "httpd" and host not in LB_HOSTS:
            raise UsageError(f"fault httpd applies to LB hosts only ({', '.join(LB_HOSTS)})")
        if not self.has_objects():
            raise StateError(f"lab {self.n} is not up")
        if kind != "power" and self.pid1(host) is None:
            raise StateError(f"{host} is powered off; heal it first")
        if kind == "power":
            pid = self.pid1(host)
            if pid:
                os.kill(pid, signal.SIGKILL)
                self.drain(host)
            if self.link_state(host) != "absent":
                sh(["ip", "link", "del", self.veth(host)])
            what = "powered off (all its processes killed, its NIC and addresses gone)"
        elif kind == "network":
            sh(["ip", "link", "set", self.veth(host), "down"])
            what = f"link down ({self.veth(host)}: cable pulled)"
        elif kind == "heartbeat":
            self.kill_in_host(
                host,
                [
                    "corosync",
                    "pacemakerd",
                    "pacemaker-based",
                    "pacemaker-fenced",
                    "pacemaker-execd",
                    "pacemaker-attrd",
                    "pacemaker-schedulerd",
                    "pacemaker-controld",
                ],
            )
            what = "corosync and pacemaker killed (SIGKILL)"
        elif kind == "pgpool":
            self.backup(host, "/etc/pgpool2/pgpool.conf")
            with open(self.fs(host, "/etc/pgpool2/pgpool.conf"), "a") as f:
                f.write(
                    "\n# broken by lab.fault (pgpool start failure)\n"
                    "port = this is broken by lab fault\n"
                )
            self.kill_in_host(host, ["pgpool"])
            what = "pgpool.conf broken (invalid port) and pgpool killed"
        elif kind == "postgres":
            self.hrun(
                host,
                f'pid=$(head -n 1 {PGDATA}/postmaster.pid 2>/dev/null) && kill -9 "$pid"',
                check=False,
            )
            what = "postmaster killed (SIGKILL)"
        else:  # httpd
            self.backup(host, "/etc/apache2/apache2.conf")
            with open(self.fs(host, "/etc/apache2/apache2.conf"), "a") as f:
                f.write(
                    "\n# broken by lab.fault (httpd start failure)\n"
                    "ThisIsNotADirective broken-by-lab-fault\n"
                )
            self.kill_in_host(host, ["apache2"])
            what = "apache2.conf broken (unknown directive) and apache killed"
        self.record_fault(host, kind)
        self.progress(f"fault {kind} on {host}: {what}")

    def heal(self, host):
        """Undo what lab.fault did to the host (power on, cable, config). Does not repair
        the cluster:
        starting the stack or PostgreSQL after heartbeat/postgres faults is the operator's job."""
        self.check_host(host)
        if not self.has_objects():
            raise StateError(f"lab {self.n} is not up")
        faults = self.faults()
        kinds = [f["kind"] for f in faults.get(host, [])]
        done = []
        if self.pid1(host) is None:
            if self.link_state(host) == "absent":
                self.make_link(host)
            boot = self.read_json("running.json", {}).get("boot_services", True)
            self.start_init(host, boot=boot)
            self.wait_host(host)
            wait_until(f"{host} to finish booting", lambda: self.booted(host), 120, 0.2)
            done.append(
                "powered on (boot: PostgreSQL + cluster stack start)" if boot else "powered on"
            )
        if self.link_state(host) == "absent":
            self.make_link(host)
            done.append("NIC recreated")
        if self.link_state(host) == "down":
            sh(["ip", "link", "set", self.veth(host), "up"])
            done.append("link up")
        if self.restore(host, "/etc/pgpool2/pgpool.conf"):
            done.append("pgpool.conf restored")
        if self.restore(host, "/etc/apache2/apache2.conf"):
            done.append("apache2.conf restored")
        for k in kinds:
            if k == "heartbeat":
                done.append("heartbeat: nothing to undo (start the stack: stack_start)")
            elif k == "postgres":
                done.append("postgres: nothing to undo (start PostgreSQL: pg_ctl start)")
        faults.pop(host, None)
        self.write_json("faults.json", faults)
        self.progress(f"heal {host}: " + ("; ".join(done) if done else "nothing to undo"))
        return done
