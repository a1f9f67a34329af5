"""Building a lab's contents: keys, each host's file tree, PostgreSQL (initdb, settings, recovery
scripts, the password), the cluster stack start, the application database, and the client files
(ssh_config, hosts.ini, power-check) the operator's tools use."""

import hashlib
import os
import secrets
import shutil

from .base import (
    APP_DB,
    DB_HOSTS,
    HOST_DIRS,
    HOSTS,
    LAB_DIR,
    LB_HOSTS,
    PG_BIN,
    PGDATA,
    LabError,
    sh,
)
from .configs import LabConfigs
from .health import LabHealth


class LabBootstrap(LabHealth, LabConfigs):
    """Keys, file trees, PostgreSQL, the cluster stack and GYOM_DB of lab instance N."""

    # ---- keys and file trees -------------------------------------------------------------
    def _keygen(self, path, comment):
        if not path.exists():
            sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
        return path.with_name(path.name + ".pub").read_text().strip()

    def make_keys(self):
        self.make_dir(self.state, mode=0o755)
        self.make_dir(self.keys, mode=0o700)
        self.lab_pub = self._keygen(self.keys / "id_ed25519", f"hatasks-lab-{self.n}")
        self.pg_pub = self._keygen(
            self.keys / "postgres_id_ed25519", f"postgres@hatasks-lab-{self.n}"
        )
        self.host_pub = {
            h: self._keygen(self.keys / f"ssh_host_{h}_ed25519_key", f"root@{h}") for h in HOSTS
        }
        lines = []
        for h in HOSTS:
            key = " ".join(self.host_pub[h].split()[:2])
            lines.append(f"{h},{self.ip(h)} {key}")
        # the VIPs answer with the key of whichever node holds them
        for h in DB_HOSTS:
            lines.append(f"db-vip,{self.db_vip} {' '.join(self.host_pub[h].split()[:2])}")
        for h in LB_HOSTS:
            lines.append(f"lb-vip,{self.lb_vip} {' '.join(self.host_pub[h].split()[:2])}")
        self.known_hosts = "\n".join(lines) + "\n"
        self.write_file(self.keys / "known_hosts", self.known_hosts, mode=0o644)
        self.password = secrets.token_hex(16)
        self.write_file(self.pgpass, f"*:*:*:postgres:{self.password}\n", mode=0o600)

    def build_files(self):
        """Write every host's own file tree under lab/.state/N/hosts/HOST."""
        shutil.rmtree(self.state / "hosts", ignore_errors=True)
        self.make_dir(self.state / "hosts")
        authkey = {"db": os.urandom(128), "lb": os.urandom(128)}
        pcp_md5 = hashlib.md5(self.password.encode()).hexdigest()
        for h in HOSTS:
            kind = h[:2]
            hd = self.hostdir(h)
            self.make_dir(hd)
            for d in HOST_DIRS:
                self.make_dir(self.fs(h, d))
            self.fs(h, "root").chmod(0o700)
            self.fs(h, "var/tmp").chmod(0o1777)
            self.make_dir(hd / "tmp", mode=0o1777)
            self.write_file(self.fs(h, "etc/hosts"), self.etc_hosts())
            self.write_file(hd / "sshd_config", self.sshd_config(h))
            self.write_file(
                hd / "ssh_host_ed25519_key",
                (self.keys / f"ssh_host_{h}_ed25519_key").read_text(),
                mode=0o600,
            )
            # /var/log skeleton
            for d, o, g, m in (
                ("apache2", "root", "adm", 0o750),
                ("corosync", "root", "root", 0o755),
                ("pacemaker", "hacluster", "haclient", 0o770),
                ("postgresql", "root", "postgres", 0o1775),
                ("pgpool", "postgres", "postgres", 0o755),
            ):
                self.make_dir(self.fs(h, f"var/log/{d}"), o, g, m)
            for f in ("wtmp", "lastlog", "btmp"):
                self.write_file(self.fs(h, f"var/log/{f}"), "", "root", "utmp", 0o660)
            for d in ("cib", "pengine", "blackbox", "cores"):
                self.make_dir(self.fs(h, f"var/lib/pacemaker/{d}"), "hacluster", "haclient", 0o750)
            # cluster stack
            cluster = "dbcluster" if kind == "db" else "lbcluster"
            members = DB_HOSTS if kind == "db" else LB_HOSTS
            self.write_file(
                self.fs(h, "etc/corosync/corosync.conf"), self.corosync_conf(cluster, members)
            )
            self.write_file(self.fs(h, "etc/corosync/authkey"), authkey[kind], mode=0o400)
            self.write_file(
                self.fs(h, "var/lib/pacemaker/cib/cib.xml"),
                self.cib_xml(cluster, members),
                "hacluster",
                "haclient",
                0o600,
            )
            # OCF providers (hostinit.sh binds heartbeat/pacemaker over the empty dirs)
            for d in ("heartbeat", "pacemaker", "lab"):
                self.make_dir(hd / "ocf-rd" / d)
            shutil.copy2(LAB_DIR / "ocf" / "pgpool", hd / "ocf-rd" / "lab" / "pgpool")
            (hd / "ocf-rd" / "lab" / "pgpool").chmod(0o755)
            # root's ssh
            self.make_dir(self.fs(h, "root/.ssh"), mode=0o700)
            self.write_file(
                self.fs(h, "root/.ssh/authorized_keys"), self.lab_pub + "\n", mode=0o600
            )
            # postgres' home: ssh (lab key + postgres-to-postgres key), pcppass, pgpass
            self.fs(h, "var/lib/postgresql").chmod(0o755)
            shutil.chown(self.fs(h, "var/lib/postgresql"), "postgres", "postgres")
            pgssh = self.fs(h, "var/lib/postgresql/.ssh")
            self.make_dir(pgssh, "postgres", mode=0o700)
            self.write_file(
                pgssh / "authorized_keys",
                f"{self.lab_pub}\n{self.pg_pub}\n",
                "postgres",
                mode=0o600,
            )
            self.write_file(pgssh / "known_hosts", self.known_hosts, "postgres", mode=0o644)
            self.write_file(
                pgssh / "id_ed25519",
                (self.keys / "postgres_id_ed25519").read_text(),
                "postgres",
                mode=0o600,
            )
            self.write_file(pgssh / "id_ed25519.pub", self.pg_pub + "\n", "postgres", mode=0o644)
            self.write_file(
                self.fs(h, "var/lib/postgresql/.pcppass"),
                f"*:*:postgres:{self.password}\n",
                "postgres",
                mode=0o600,
            )
            self.write_file(
                self.fs(h, "var/lib/postgresql/.pgpass"),
                f"*:*:*:postgres:{self.password}\n",
                "postgres",
                mode=0o600,
            )
            self.write_file(
                self.fs(h, "root/.pcppass"), f"*:*:postgres:{self.password}\n", mode=0o600
            )
            self.make_dir(self.fs(h, "var/lib/postgresql/15"), "postgres", mode=0o755)
            # pgpool
            if kind == "db":
                self.write_file(
                    self.fs(h, "etc/pgpool2/pgpool.conf"),
                    self.pgpool_conf(),
                    "root",
                    "postgres",
                    0o644,
                )
                self.write_file(
                    self.fs(h, "etc/pgpool2/pcp.conf"),
                    f"postgres:{pcp_md5}\n",
                    "root",
                    "postgres",
                    0o640,
                )
                self.write_file(
                    self.fs(h, "etc/pgpool2/pool_hba.conf"),
                    "# unused: enable_pool_hba = off in the lab\nhost all all 0.0.0.0/0 trust\n",
                )
            # apache: the machine's config, each host its own copy, a page naming the host
            shutil.rmtree(self.fs(h, "etc/apache2"))
            shutil.copytree("/etc/apache2", self.fs(h, "etc/apache2"), symlinks=True)
            self.make_dir(self.fs(h, "var/www/html"))
            self.write_file(
                self.fs(h, "var/www/html/index.html"),
                f"<html><body><h1>{h}</h1><p>hatasks lab {self.n}: served by {h}</p>"
                "</body></html>\n",
            )

    # ---- PostgreSQL ----------------------------------------------------------------------
    def initdb(self, host):
        """initdb inside the host as postgres (so the checkout's path needs no access for postgres),
        then the lab's settings, pg_hba.conf and recovery scripts."""
        self.hrun(
            host,
            f"{PG_BIN}/initdb -D {PGDATA} -U postgres -E UTF8 --locale=C.UTF-8 "
            "--auth-local=peer --auth-host=scram-sha-256 --no-sync >/dev/null",
            user="postgres",
            timeout=120,
        )
        self.finish_pgdata(host)

    def finish_pgdata(self, host):
        data = self.fs(host, PGDATA)
        with open(data / "postgresql.conf", "a") as f:
            f.write(self.pg_settings())
        self.write_file(data / "pg_hba.conf", self.pg_hba(), "postgres", mode=0o600)
        for script in ("recovery_1st_stage", "recovery_2nd_stage", "pgpool_remote_start"):
            shutil.copy2(LAB_DIR / "pg" / script, data / script)
            shutil.chown(data / script, "postgres", "postgres")
            (data / script).chmod(0o700)

    def pg_start(self, host):
        self.hrun(
            host,
            f"rm -f {PGDATA}/postmaster.pid; {PG_BIN}/pg_ctl -D {PGDATA} -w -t 60 "
            f"-l /var/log/postgresql/pg_ctl.log start >/dev/null",
            user="postgres",
            timeout=90,
        )

    def pg_setup(self, host):
        sql = (
            f"ALTER ROLE postgres PASSWORD '{self.password}';\n"
            "CREATE EXTENSION IF NOT EXISTS pgpool_recovery;\n"
        )
        self.hrun(host, "psql -X -q -v ON_ERROR_STOP=1 -d template1", user="postgres", input=sql)

    def db_host_setup(self, host):
        self.initdb(host)
        self.pg_start(host)
        self.pg_setup(host)

    # ---- the cluster stack and the data --------------------------------------------------
    def stack_start(self, host):
        self.hrun(host, "/opt/hatasks-lab/bin/stack start", timeout=90)

    def counts(self, host):
        q = (
            "SELECT (SELECT count(*) FROM customers) || ',' || "
            "(SELECT count(*) FROM orders) || ',' || "
            "(SELECT count(*) FROM order_lines);"
        )
        return self.psql(self.ip(host), 5432, q, db=APP_DB).stdout.strip()

    def load_app_db(self):
        self.psql(self.db_vip, 9999, f'CREATE DATABASE "{APP_DB}";')
        self.psql(self.db_vip, 9999, self.app_sql(), db=APP_DB, timeout=120)
        c1, c2 = self.counts("db01"), self.counts("db02")
        if c1 != c2 or c1 != "1000,3000,9000":
            raise LabError(f"{APP_DB} differs between backends: db01={c1} db02={c2}")
        return c1

    # ---- the operator's client files -----------------------------------------------------
    def write_client_files(self):
        ssh_config = self.ssh_config_text()
        self.write_file(self.state / "ssh_config", ssh_config)
        if self.n == 0:
            self.write_file(LAB_DIR / "ssh_config", ssh_config)
        self.write_file(self.state / "hosts.ini", self.inventory_text())
        self.make_dir(self.state / "bin")
        # with fencing, the power check asks the host's BMC over IPMI, as a site's does
        check = "ipmi-power" if getattr(self, "fencing", False) else "power-check"
        self.write_file(
            self.state / "bin" / "power-check",
            f"#!/bin/sh\n# power check of lab instance {self.n}\n"
            f"exec {LAB_DIR / 'bin' / check} --lab {self.n} \"$@\"\n",
            mode=0o755,
        )
