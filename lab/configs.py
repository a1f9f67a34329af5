"""The text of every file the lab writes: the hosts' configuration (corosync, the CIB, pgpool,
PostgreSQL, sshd, /etc/hosts), the application's data, and the operator's ssh_config and
inventory. Pure: nothing here touches the machine but reading the top-level hosts.ini."""

from .base import DB_HOSTS, HOSTS, NODE_ID, OCTET, PGDATA, ROOT, LabBase, LabError
from .bmc import BMC_PORT, BMC_USER, MGMT_NET, PRIORITY_FENCING_DELAY


class LabConfigs(LabBase):
    """Configuration texts of lab instance N (its addresses, names and paths)."""

    # ---- the hosts' configuration --------------------------------------------------------
    def etc_hosts(self):
        rows = ["127.0.0.1\tlocalhost", f"{self.gw}\tlabgw"]
        rows += [f"{self.ip(h)}\t{h}" for h in HOSTS]
        rows += [
            f"{self.db_vip}\tdb-vip db",
            f"{self.lb_vip}\tlb-vip",
        ]  # "db": the runbook's name of the DB VIP
        return "\n".join(rows) + "\n"

    def corosync_conf(self, cluster, hosts):
        nodes = "".join(
            f"    node {{\n        ring0_addr: {self.ip(h)}\n        name: {h}\n"
            f"        nodeid: {NODE_ID[h]}\n    }}\n"
            for h in hosts
        )
        return (
            f"# lab {self.n}: written by lab.up\n"
            f"totem {{\n    version: 2\n    cluster_name: {cluster}\n    transport: knet\n"
            f"    crypto_cipher: aes256\n    crypto_hash: sha256\n}}\n"
            f"nodelist {{\n{nodes}}}\n"
            f"quorum {{\n    provider: corosync_votequorum\n    two_node: 1\n}}\n"
            f"logging {{\n    to_logfile: yes\n    logfile: /var/log/corosync/corosync.log\n"
            f"    to_syslog: no\n    to_stderr: no\n    timestamp: on\n}}\n"
        )

    def cib_xml(self, cluster, hosts):
        def nv(prefix, name, value):
            return f'<nvpair id="{prefix}-{name}" name="{name}" value="{value}"/>'

        def ops(rid, start="60s", stop="60s"):
            return (
                f"<operations>"
                f'<op id="{rid}-start-0" name="start" interval="0" timeout="{start}"/>'
                f'<op id="{rid}-stop-0" name="stop" interval="0" timeout="{stop}"/>'
                f'<op id="{rid}-monitor-10s" name="monitor" interval="10s" timeout="20s"/>'
                f"</operations>"
            )

        def ipaddr(rid, vip):
            p = f"{rid}-instance_attributes"
            return (
                f'<primitive id="{rid}" class="ocf" provider="heartbeat" type="IPaddr2">'
                f'<instance_attributes id="{p}">{nv(p, "ip", vip)}{nv(p, "cidr_netmask", "24")}'
                f'{nv(p, "nic", "eth0")}</instance_attributes>{ops(rid, "20s", "20s")}</primitive>'
            )

        if cluster == "dbcluster":
            group = (
                f'<group id="grp-pgpool">{ipaddr("db-vip", self.db_vip)}'
                f'<primitive id="pgpool" class="ocf" provider="lab" type="pgpool">{ops("pgpool")}'
                f"</primitive></group>"
            )
            # initial placement on db01; weaker than stickiness, so no automatic failback
            constraints = (
                '<rsc_location id="loc-grp-pgpool-db01" rsc="grp-pgpool" node="db01" score="50"/>'
            )
            stickiness = "100"
        else:
            p = "apache-instance_attributes"
            group = (
                f'<group id="grp-apache">{ipaddr("lb-vip", self.lb_vip)}'
                f'<primitive id="apache" class="ocf" provider="heartbeat" type="apache">'
                f'<instance_attributes id="{p}">{nv(p, "configfile", "/etc/apache2/apache2.conf")}'
                f'{nv(p, "httpd", "/usr/sbin/apache2")}'
                f'{nv(p, "statusurl", "http://localhost/server-status")}</instance_attributes>'
                f'{ops("apache", "40s", "60s")}</primitive></group>'
            )
            # the LB cluster fails back to lb01 by itself (runbook 5.1.1)
            constraints = (
                '<rsc_location id="loc-grp-apache-lb01" rsc="grp-apache" node="lb01" score="100"/>'
            )
            stickiness = "0"
        if getattr(self, "fencing", False):
            # the group's node wins a fencing race (priority-fencing-delay: its peer waits
            # before fencing it, it fences its peer at once): a cut node never takes over
            gid = "grp-pgpool" if cluster == "dbcluster" else "grp-apache"
            group = group.replace(
                f'<group id="{gid}">',
                f'<group id="{gid}"><meta_attributes id="{gid}-meta">'
                f'{nv(gid + "-meta", "priority", "10")}</meta_attributes>', 1)
            # one fence_ipmilan device per node, never run on the node it fences; a fenced node
            # stays off (stonith-action off) until the operator powers it on through its BMC
            for h in hosts:
                rid, p = f"fence-{h}", f"fence-{h}-instance_attributes"
                group += (
                    f'<primitive id="{rid}" class="stonith" type="fence_ipmilan">'
                    f'<instance_attributes id="{p}">{nv(p, "ip", f"{MGMT_NET}.{self.n}.1")}'
                    f'{nv(p, "ipport", str(BMC_PORT + OCTET[h]))}{nv(p, "username", BMC_USER)}'
                    f'{nv(p, "password_script", "/opt/hatasks-lab/host/fence-password")}'
                    f'{nv(p, "lanplus", "1")}{nv(p, "cipher", "3")}{nv(p, "pcmk_host_list", h)}'
                    f'</instance_attributes><meta_attributes id="{rid}-meta">'
                    f'{nv(rid + "-meta", "failure-timeout", "60s")}</meta_attributes>'
                    f'<operations><op id="{rid}-monitor-60s" name="monitor" interval="60s" '
                    f'timeout="20s"/></operations></primitive>'
                )
                constraints += (
                    f'<rsc_location id="loc-{rid}" rsc="{rid}" node="{h}" score="-INFINITY"/>'
                )
        fencing = "true" if getattr(self, "fencing", False) else "false"
        b = "cib-bootstrap-options"
        props = "".join(
            nv(b, k, v)
            for k, v in (
                ("dc-deadtime", "5s"),
                ("stonith-enabled", fencing),
                ("stonith-action", "off"),
                ("no-quorum-policy", "ignore"),
                ("cluster-name", cluster),
                ("cluster-recheck-interval", "1min"),
            )
        )
        if getattr(self, "fencing", False):
            props += nv(b, "priority-fencing-delay", PRIORITY_FENCING_DELAY)
        nodes = "".join(f'<node id="{NODE_ID[h]}" uname="{h}"/>' for h in hosts)
        return (
            f'<cib crm_feature_set="3.16.1" validate-with="pacemaker-3.9" epoch="1" '
            f'num_updates="0" '
            f'admin_epoch="0"><configuration><crm_config><cluster_property_set id="{b}">{props}'
            f"</cluster_property_set></crm_config><nodes>{nodes}</nodes>"
            f"<resources>{group}</resources>"
            f"<constraints>{constraints}</constraints>"
            f'<rsc_defaults><meta_attributes id="rsc-options">'
            f'{nv("rsc-options", "resource-stickiness", stickiness)}'
            f"</meta_attributes></rsc_defaults>"
            f"</configuration><status/></cib>\n"
        )

    def pgpool_conf(self):
        backends = ""
        for i, h in enumerate(DB_HOSTS):
            backends += (
                f"backend_hostname{i} = '{h}'\nbackend_port{i} = 5432\nbackend_weight{i} = 1\n"
                f"backend_data_directory{i} = '{PGDATA}'\nbackend_flag{i} = 'ALLOW_TO_FAILOVER'\n"
                f"backend_application_name{i} = '{h}'\n"
            )
        return f"""# pgpool-II 4.3, lab {self.n}: written by lab.up.
# The same backend order on both DB nodes.
backend_clustering_mode = 'native_replication'
listen_addresses = '*'
port = 9999
unix_socket_directories = '/var/run/postgresql'
pcp_listen_addresses = '*'
pcp_port = 9898
pcp_socket_dir = '/var/run/postgresql'
{backends}
# lab: clients are not authenticated by pgpool (backends trust the lab subnet)
enable_pool_hba = off
pool_passwd = ''
num_init_children = 16
max_pool = 2
pid_file_name = '/var/run/postgresql/pgpool.pid'
logdir = '/var/log/postgresql'
log_destination = 'stderr'
log_line_prefix = '%m: %a pid %p: '
# pgpool's own log files (a daemon-mode start has no stderr): /var/log/pgpool/pgpool-YYYY-MM-DD.log
logging_collector = on
log_directory = '/var/log/pgpool'
log_filename = 'pgpool-%Y-%m-%d.log'
load_balance_mode = on
replication_stop_on_mismatch = off
failover_on_backend_error = on
health_check_period = 5
health_check_timeout = 10
health_check_user = 'postgres'
health_check_password = ''
health_check_max_retries = 0
recovery_user = 'postgres'
recovery_password = ''
recovery_1st_stage_command = 'recovery_1st_stage'
recovery_2nd_stage_command = 'recovery_2nd_stage'
recovery_timeout = 90
client_idle_limit_in_recovery = -1
use_watchdog = off
memory_cache_enabled = off
"""

    def pg_settings(self):
        return f"""
# ---- hatasks lab {self.n} (written by lab.up) ----
listen_addresses = '*'
port = 5432
max_connections = 100
shared_buffers = 32MB
unix_socket_directories = '/var/run/postgresql'
logging_collector = on
log_directory = 'log'
log_filename = 'postgresql-%Y-%m-%d.log'
log_line_prefix = '%m [%p] %q%u@%d '
wal_level = replica
max_wal_senders = 5
# lab only: every "server" shares one kernel, so a killed host loses no written page
fsync = off
"""

    def pg_hba(self):
        return f"""# lab {self.n}: written by lab.up
# TYPE  DATABASE     USER  ADDRESS            METHOD
local   all          all                      peer
local   replication  all                      peer
# the tool's direct connections (ssh tunnel to 127.0.0.1): password from lab/.state/N/pgpass
host    all          all   127.0.0.1/32       scram-sha-256
host    replication  all   127.0.0.1/32       scram-sha-256
# LAB ONLY: trust from the lab's private subnet (pgpool's backend and health-check connections,
# online recovery's pg_basebackup). Never do this on a real network.
host    all          all   {self.subnet}      trust
host    replication  all   {self.subnet}      trust
"""

    def sshd_config(self, host):
        return f"""# sshd of lab host {host} (lab {self.n}); written by lab.up
Port 22
AddressFamily inet
ListenAddress 0.0.0.0
HostKey /opt/hatasks-lab/host/ssh_host_ed25519_key
PidFile /run/sshd.pid
UsePAM yes
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile .ssh/authorized_keys
StrictModes yes
UseDNS no
PrintMotd no
MaxStartups 100:30:200
MaxSessions 50
Subsystem sftp /usr/lib/openssh/sftp-server
"""

    # ---- the application's data ----------------------------------------------------------
    def app_sql(self):
        return """
CREATE TABLE customers (
    id integer PRIMARY KEY,
    name text NOT NULL,
    email text NOT NULL UNIQUE,
    city text NOT NULL,
    created_at timestamp NOT NULL
);
CREATE TABLE orders (
    id integer PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES customers (id),
    ordered_at timestamp NOT NULL,
    status text NOT NULL
);
CREATE INDEX orders_customer_id ON orders (customer_id);
CREATE TABLE order_lines (
    order_id integer NOT NULL REFERENCES orders (id),
    line_no integer NOT NULL,
    product text NOT NULL,
    quantity integer NOT NULL,
    unit_price numeric(10, 2) NOT NULL,
    PRIMARY KEY (order_id, line_no)
);
-- deterministic values only: pgpool's native replication sends the same SQL to both backends
INSERT INTO customers
SELECT i, 'customer ' || i, 'customer' || i || '@example.invalid',
       (ARRAY['Tokyo', 'Osaka', 'Nagoya', 'Sapporo', 'Fukuoka'])[1 + i % 5],
       timestamp '2026-01-01 09:00' + i * interval '1 hour'
FROM generate_series(1, 1000) AS i;
INSERT INTO orders
SELECT i, 1 + (i * 7) % 1000, timestamp '2026-02-01 09:00' + i * interval '10 minutes',
       (ARRAY['new', 'paid', 'shipped', 'closed'])[1 + i % 4]
FROM generate_series(1, 3000) AS i;
INSERT INTO order_lines
SELECT o, l, 'product ' || ((o * 3 + l) % 200), 1 + (o + l) % 5,
       1 + ((o * 13 + l * 7) % 10000) / 100.0
FROM generate_series(1, 3000) AS o, generate_series(1, 3) AS l;
"""

    # ---- the operator's side: ssh config and inventory -----------------------------------
    def ssh_config_text(self):
        lines = [
            f"# ssh aliases of lab instance {self.n}; written by `inv lab.up`.",
            "# Use: ssh -F THIS_FILE db01",
            "",
        ]
        for h in HOSTS:
            lines += [f"Host {h}", f"    HostName {self.ip(h)}", ""]
        lines += [
            "Host db-vip",
            f"    HostName {self.db_vip}",
            "",
            "Host lb-vip",
            f"    HostName {self.lb_vip}",
            "",
        ]
        lines += [
            "Host db01 db02 lb01 lb02 db-vip lb-vip",
            "    User root",
            "    Port 22",
            f"    IdentityFile {self.keys / 'id_ed25519'}",
            "    IdentitiesOnly yes",
            f"    UserKnownHostsFile {self.keys / 'known_hosts'}",
            "    GlobalKnownHostsFile /dev/null",
            "    StrictHostKeyChecking yes",
            "    BatchMode yes",
            "    ConnectTimeout 5",
            "    LogLevel ERROR",
            "",
        ]
        return "\n".join(lines)

    def inventory_text(self):
        """The top-level hosts.ini with this instance's addresses and paths (relative to
        its own folder)."""
        text = (ROOT / "hosts.ini").read_text()
        replacements = [
            ("10.231.0.", f"{self.net}."),
            ("ssh_config=lab/ssh_config", "ssh_config=ssh_config"),
            ("pgpass=lab/.state/0/pgpass", "pgpass=pgpass"),
            ("power_check=lab/bin/power-check {host}", "power_check=bin/power-check {host}"),
        ]
        for old, new in replacements:
            if old not in text:
                raise LabError(
                    f"hosts.ini no longer contains {old!r}: update lab/configs.py inventory_text"
                )
            text = text.replace(old, new)
        header = (
            f"# lab instance {self.n}: generated by `inv lab.up` from the top-level hosts.ini\n"
            f"# (addresses 10.231.{self.n}.x; relative paths are relative to this folder)\n"
        )
        return header + text


# ---- a fleet: several lab instances as one site -----------------------------------------------
def fleet_texts(instances):
    """(hosts.ini, ssh_config) of one site made of lab INSTANCES (each brought up on its own with
    HATASKS_LAB=N inv lab.up). Instance N's clusters are named dbN and lbN and its hosts dbNN-N
    (db01-6 ...): inventory names are unique across the site. ``crm_node`` keeps each host's
    Pacemaker node name (db01 ...), ``HostKeyAlias`` its known_hosts entry; each cluster points at
    its instance's pgpass, ssh key and power-check (``--lab N``)."""
    if len(set(instances)) != len(instances) or not instances:
        raise LabError(f"a fleet needs distinct instances, not {instances!r}")
    inv = [f"# a site of lab instances {', '.join(map(str, instances))}: generated by"
           f" `inv lab.fleet-inventory`", "# clusters: "
           + ", ".join(f"db{n} lb{n}" for n in instances), "", "[all:vars]",
           "ssh_config=ssh_config", ""]
    ssh = [f"# ssh aliases of the lab fleet {instances}; written by `inv lab.fleet-inventory`.", ""]
    for n in instances:
        cfg = LabConfigs(n=n)
        text = cfg.inventory_text()
        body = text.split("[all:vars]", 1)[1]
        out = []
        for line in body.splitlines()[1:]:
            if line.startswith(("ssh_config=", "pgpass=")) or line.startswith("# ssh aliases") \
                    or line.startswith("# libpq passfile"):
                continue
            for kind in ("db", "lb"):
                if line == f"[{kind}]":
                    line = f"[{kind}{n}]"
                elif line == f"[{kind}:vars]":
                    line = f"[{kind}{n}:vars]\npgpass={cfg.state / 'pgpass'}"
            word = line.split(" ", 1)[0]
            if word in HOSTS:
                line = (f"{word}-{n} {line.split(' ', 1)[1]} crm_node={word}"
                        f" power_check=\"{ROOT / 'lab' / 'bin' / 'power-check'} --lab {n} {word}\"")
                ssh += [f"Host {word}-{n}", f"    HostName {cfg.ip(word)}",
                        f"    HostKeyAlias {word}", f"    IdentityFile {cfg.keys / 'id_ed25519'}",
                        f"    UserKnownHostsFile {cfg.keys / 'known_hosts'}", ""]
            elif line.startswith(("power_check=", "# out-of-band power check")):
                continue
            out.append(line)
        inv += [f"# ---- lab instance {n} ----"] + out
    ssh += ["Host *", "    User root", "    Port 22", "    IdentitiesOnly yes",
            "    GlobalKnownHostsFile /dev/null", "    StrictHostKeyChecking yes", "    BatchMode yes",
            "    ConnectTimeout 5", "    LogLevel ERROR", ""]
    return "\n".join(inv) + "\n", "\n".join(ssh)
