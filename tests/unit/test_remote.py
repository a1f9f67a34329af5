"""remote.py without a network: value checks, command wrapping, dry runs, errors,
fan-out, the ssh connection setup (host keys), pgpass lookup, the tunnel's pumping."""

import os
import pathlib
import shlex
import socket
import threading
import time

import invoke
import paramiko
import pytest

from hatasks import remote
from hatasks.errors import HaError, UnreachableError, UsageError

import conftest


def write_inventory(tmp_path, extra_all="", body=None):
    (tmp_path / "hosts.ini").write_text(body or (
        "[all:vars]\n" + extra_all +
        "[db]\ndb01 ansible_host=127.0.0.1 pgpool_node_id=0\n"
        "db02 ansible_host=127.0.0.1 pgpool_node_id=1\n"
        "[db:vars]\ncluster_kind=db\npg_port=5432\n"
    ))
    return str(tmp_path / "hosts.ini")


def make_ctx(inv_path, dry=False, timeout=3):
    return conftest.make_ctx(pathlib.Path(inv_path).parent, inventory=inv_path, dry=dry,
                             connect_timeout=timeout)


@pytest.fixture
def ctx(tmp_path):
    return make_ctx(write_inventory(tmp_path))


@pytest.fixture
def dry_ctx(tmp_path):
    return make_ctx(write_inventory(tmp_path), dry=True)


@pytest.fixture
def fake(fake):
    """The shared FakeRemote; every host answers "db01"."""
    return fake.on(lambda host, cmd: True, (0, "db01\n"))


# ---- check_value -----------------------------------------------------------

@pytest.mark.parametrize("value", ["db01", "grp-pgpool", "10.231.0.100", "db-vip", "0",
                                   "/var/lib/postgresql/15/data", "user@host", "a_b.c:5432"])
def test_check_value_accepts_names(value):
    assert remote.check_value("node", value) == value


@pytest.mark.parametrize("value, why", [
    ("db01;id", "';'"), ("db01 id", "' '"), ("$(id)", "'$'"), ("a`b`", "'`'"),
    ("a|b", "'|'"), ("a&b", "'&'"), ("a>b", "'>'"), ("it's", "\"'\""), ("a\nb", "'\\n'"),
    ("a*", "'*'"), ("", "empty"), ("-rf", "start with '-'"), (None, "empty"),
])
def test_check_value_rejects(value, why):
    with pytest.raises(UsageError) as e:
        remote.check_value("node", value)
    assert e.value.message.startswith("--node")
    assert why in e.value.message
    assert "\n" not in e.value.message


def test_check_value_keeps_a_given_flag_name():
    with pytest.raises(UsageError, match=r"^--resource 'x;y'"):
        remote.check_value("--resource", "x;y")


# ---- wrap ------------------------------------------------------------------

def test_wrap_root_is_the_command_itself():
    assert remote.wrap("crm_mon -1", "root", "root") == "crm_mon -1"


def test_wrap_postgres_uses_runuser_and_one_quoted_argument():
    cmd = "psql -p 5432 -c 'select 1'"
    line = remote.wrap(cmd, "postgres", "root")
    assert line == ("runuser -u postgres -- sh -c "
                    + shlex.quote("cd ~ 2>/dev/null; " + cmd))
    argv = shlex.split(line)
    assert argv[:6] == ["runuser", "-u", "postgres", "--", "sh", "-c"]
    assert argv[6] == "cd ~ 2>/dev/null; " + cmd
    assert len(argv) == 7


def test_wrap_with_a_non_root_login_uses_sudo():
    assert remote.wrap("id", "root", "admin") == "sudo -n -- sh -c id"
    assert shlex.split(remote.wrap("id -un", "postgres", "admin")) == [
        "sudo", "-n", "-u", "postgres", "--", "sh", "-c", "cd ~ 2>/dev/null; id -un"]


def test_wrap_refuses_a_strange_user():
    with pytest.raises(UsageError):
        remote.wrap("id", "post gres", "root")


# ---- run -------------------------------------------------------------------

def test_run_as_root_sends_the_command(ctx, fake):
    r = remote.run(ctx, "db01", "hostname", probe=True)
    assert r.stdout == "db01\n"
    command, kw = fake.calls[0].line, fake.calls[0].options
    assert command == "hostname"
    assert kw["dry"] is False and kw["warn"] is True and kw["hide"] is True
    assert kw["in_stream"] is False


def test_run_as_postgres_wraps(ctx, fake):
    remote.run(ctx, "db02", "id -un", user="postgres")
    assert fake.calls[0].line == "runuser -u postgres -- sh -c 'cd ~ 2>/dev/null; id -un'"
    remote.run(ctx, "db02", "pg_ctl -D /d -o '-p 5433' start", user="postgres")
    assert shlex.split(fake.calls[1].line)[-1] == "cd ~ 2>/dev/null; pg_ctl -D /d -o '-p 5433' start"


def test_dry_prints_and_does_not_connect(dry_ctx, fake, capsys):
    r = remote.run(dry_ctx, "db01", "crm_standby -N db01 -v on")
    assert r.exited == 0 and r.stdout == "" and r.ok
    r = remote.run(dry_ctx, "db02", "pg_ctl stop", user="postgres")
    assert capsys.readouterr().out == (
        "[dry] db01 (as root): crm_standby -N db01 -v on\n"
        "[dry] db02 (as postgres): pg_ctl stop\n")
    assert fake.calls == []


def test_probe_runs_under_dry(dry_ctx, fake, capsys):
    r = remote.run(dry_ctx, "db01", "crm_mon -1 --output-as=xml", probe=True)
    assert r.stdout == "db01\n"
    assert fake.calls[0].line == "crm_mon -1 --output-as=xml"
    assert fake.calls[0].options["dry"] is False
    assert capsys.readouterr().out == ""


def test_unknown_host_is_refused_before_anything(ctx, fake):
    with pytest.raises(UsageError, match=r"unknown host 'db09'.*known hosts: db01, db02"):
        remote.run(ctx, "db09", "id", probe=True)
    assert fake.calls == []


def test_nonzero_exit_raises_command_failed(ctx, fake):
    fake.on("crm_resource", (105, "", "crm_resource: Resource 'x' not found\n"
                                     "Error: No such object\n"))
    with pytest.raises(remote.CommandFailed) as e:
        remote.run(ctx, "db01", "crm_resource -r x -C")
    assert isinstance(e.value, HaError) and isinstance(e.value, invoke.UnexpectedExit)
    assert e.value.message == "db01: `crm_resource -r x -C` exited 105: Error: No such object"
    assert e.value.result.exited == 105
    r = remote.run(ctx, "db01", "crm_resource -r x -C", warn=True)
    assert r.exited == 105


def test_command_timeout_names_the_host(ctx, fake):
    res = invoke.Result(command="sleep 9", exited=-1)
    fake.on("sleep 9", invoke.CommandTimedOut(res, timeout=2))
    with pytest.raises(UnreachableError, match=r"^db01: `sleep 9` did not finish within 2s"):
        remote.run(ctx, "db01", "sleep 9", timeout=2, probe=True)


def test_lost_connection_is_unreachable(ctx, fake):
    fake.on("id", EOFError())
    with pytest.raises(UnreachableError, match=r"^db01: connection lost"):
        remote.run(ctx, "db01", "id", probe=True)


# ---- probe_many --------------------------------------------------------------

def test_probe_many_collects_results_and_errors_in_order(ctx):
    barrier = threading.Barrier(3, timeout=10)

    def fn(name):
        barrier.wait()  # all three run at once, or this times out
        if name == "db02":
            raise UnreachableError("db02 (10.0.0.2:22) unreachable: timed out")
        if name == "lb01":
            raise OSError(113, "No route to host")
        return name.upper()

    out = remote.probe_many(ctx, ["db01", "db02", "lb01"], fn)
    assert list(out) == ["db01", "db02", "lb01"]
    assert out["db01"] == "DB01"
    assert isinstance(out["db02"], UnreachableError)
    assert isinstance(out["lb01"], HaError) and "No route to host" in out["lb01"].message


def test_probe_many_lets_bugs_through(ctx):
    with pytest.raises(KeyError):
        remote.probe_many(ctx, ["db01"], lambda n: {}[n])


def test_probe_many_reads_in_daemon_threads_at_most_max_workers_at_once(ctx):
    """A read status gave up on must not hold the process at exit: the interpreter joins a
    ThreadPoolExecutor's threads when it ends (a connect to a dead host then kept `status`
    alive seconds after its output), never daemon threads."""
    lock, now, seen = threading.Lock(), [0], []

    def fn(name):
        with lock:
            now[0] += 1
            seen.append((threading.current_thread().daemon, now[0]))
        time.sleep(0.05)
        with lock:
            now[0] -= 1
        return name

    names = [f"h{i}" for i in range(6)]
    assert list(remote.probe_many(ctx, names, fn, max_workers=2)) == names
    assert all(daemon for daemon, _ in seen) and len(seen) == 6
    assert max(at_once for _, at_once in seen) <= 2


def test_probe_many_empty(ctx):
    assert remote.probe_many(ctx, [], lambda n: n) == {}


# ---- connections -------------------------------------------------------------

def test_connection_refused_is_unreachable_and_names_the_host(tmp_path):
    # nothing listens on this loopback port (bound then closed)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    body = f"[db]\ndb01:{port} ansible_host=127.0.0.1\n[db:vars]\ncluster_kind=db\n"
    ctx = make_ctx(write_inventory(tmp_path, body=body))
    with pytest.raises(UnreachableError) as e:
        remote.run(ctx, "db01", "id", probe=True)
    assert e.value.message.startswith(f"db01 (127.0.0.1:{port}) unreachable: ")
    assert "refused" in e.value.message.lower()


def test_bad_connect_timeout_setting(tmp_path):
    ctx = make_ctx(write_inventory(tmp_path), timeout="soon")
    with pytest.raises(UsageError, match="connect_timeout"):
        remote.connection(ctx, "db01")


def write_ssh_setup(tmp_path, key, known_as):
    (tmp_path / "known_hosts").write_text(f"{known_as} {key.get_name()} {key.get_base64()}\n")
    (tmp_path / "ssh_config").write_text(
        "Host db01\n  HostName 127.0.0.1\n  Port 2201\n  User root\n"
        "  IdentityFile keys/id_lab\n  UserKnownHostsFile known_hosts\n"
        "  GlobalKnownHostsFile /dev/null\n"
    )


@pytest.fixture(scope="module")
def hostkey():
    return paramiko.RSAKey.generate(1024)


def test_connection_setup_from_ssh_config(tmp_path, hostkey):
    write_ssh_setup(tmp_path, hostkey, "db01")
    ctx = make_ctx(write_inventory(tmp_path, extra_all="ssh_config=ssh_config\n"))
    h = remote.inventory(ctx).host("db01")
    conn = remote._new_connection(remote.inventory(ctx), h, 3)
    assert conn.original_host == "db01"
    assert conn.host == "127.0.0.1" and conn.port == 2201 and conn.user == "root"
    assert conn.connect_timeout == 3
    assert conn.connect_kwargs["key_filename"] == [str(tmp_path / "keys" / "id_lab")]
    assert conn.hatasks_known_hosts == [str(tmp_path / "known_hosts"), "/dev/null"]
    assert isinstance(conn.client._policy, paramiko.RejectPolicy)
    # a key listed under the alias counts for the address paramiko checks
    keys = conn.client.get_host_keys().lookup("[127.0.0.1]:2201")
    assert keys is not None and keys[hostkey.get_name()] == hostkey


def test_connection_setup_without_a_known_key(tmp_path, hostkey):
    write_ssh_setup(tmp_path, hostkey, "otherhost")
    ctx = make_ctx(write_inventory(tmp_path, extra_all="ssh_config=ssh_config\n"))
    h = remote.inventory(ctx).host("db01")
    conn = remote._new_connection(remote.inventory(ctx), h, 3)
    assert conn.client.get_host_keys().lookup("[127.0.0.1]:2201") is None
    assert isinstance(conn.client._policy, paramiko.RejectPolicy)


def test_connection_setup_without_ssh_config_uses_inventory(tmp_path):
    body = ("[db]\ndb01:2022 ansible_host=192.0.2.11 ansible_user=admin\n"
            "[db:vars]\ncluster_kind=db\n")
    ctx = make_ctx(write_inventory(tmp_path, body=body))
    conn = remote._new_connection(remote.inventory(ctx), remote.inventory(ctx).host("db01"), 4)
    assert (conn.host, conn.port, conn.user) == ("192.0.2.11", 2022, "admin")
    assert isinstance(conn.client._policy, paramiko.RejectPolicy)


def test_inventory_is_cached_until_the_file_changes(tmp_path):
    path = write_inventory(tmp_path)
    ctx = make_ctx(path)
    a = remote.inventory(ctx)
    assert remote.inventory(ctx) is a
    with open(path, "a") as f:
        f.write("[x]\ndb03\n")
    os.utime(path, ns=(1, 1))
    assert "db03" in remote.inventory(ctx).host_names


# ---- pgpass --------------------------------------------------------------------

def write_pgpass(tmp_path, text, mode=0o600):
    p = tmp_path / "pgpass"
    p.write_text(text)
    p.chmod(mode)
    return str(p)


def test_pgpass_lookup_libpq_rules(tmp_path):
    p = write_pgpass(tmp_path, (
        "# comment\n"
        "10.0.0.100:9999:*:postgres:vip-secret\n"
        "127.0.0.1:5432:postgres:postgres:local\\:secret\\\\x\n"
        "*:*:*:postgres:fallback\n"
    ))
    assert remote.pgpass_lookup(p, {"10.0.0.100"}, 9999, "postgres", "postgres") == "vip-secret"
    got = remote.pgpass_lookup(p, {"127.0.0.1", "db01"}, 5432, "postgres", "postgres")
    assert got == "local:secret\\x"
    assert remote.pgpass_lookup(p, {"db01"}, 5432, "GYOM_DB", "postgres") == "fallback"
    assert remote.pgpass_lookup(p, {"db01"}, 5432, "GYOM_DB", "app") is None
    assert remote.pgpass_lookup(str(tmp_path / "none"), {"x"}, 1, "d", "u") is None


def test_pgpass_readable_by_others_is_refused(tmp_path):
    p = write_pgpass(tmp_path, "*:*:*:*:pw\n", mode=0o644)
    with pytest.raises(UsageError, match="chmod 600"):
        remote.pgpass_lookup(p, {"x"}, 1, "d", "u")


def test_passfile_from_inventory_var_relative_to_inventory(tmp_path, monkeypatch):
    ctx = make_ctx(write_inventory(tmp_path, extra_all="pgpass=state/pgpass\n"))
    monkeypatch.chdir("/")
    h = remote.inventory(ctx).host("db01")
    assert remote._passfile(ctx, h) == str(tmp_path / "state" / "pgpass")
    (tmp_path / "other").mkdir()
    ctx2 = make_ctx(write_inventory(tmp_path / "other", body="[db]\nx\n"))
    monkeypatch.setenv("PGPASSFILE", "/tmp/some/pgpass")
    assert remote._passfile(ctx2, remote.inventory(ctx2).host("x")) == "/tmp/some/pgpass"


# ---- the tunnel ------------------------------------------------------------------

class SockChannel:
    """A socket posing as a paramiko Channel (select-able, recv/sendall/close/closed)."""

    def __init__(self, sock):
        self.sock = sock
        self.closed = False

    def fileno(self):
        return self.sock.fileno()

    def recv(self, n):
        return self.sock.recv(n)

    def sendall(self, data):
        self.sock.sendall(data)

    def close(self):
        if not self.closed:
            self.closed = True
            self.sock.close()


class FakeTransport:
    """open_channel connects to a local upper-casing echo server."""

    def __init__(self):
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(4)
        self.opened = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                s, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(s,), daemon=True).start()

    @staticmethod
    def _echo(s):
        while True:
            data = s.recv(65536)
            if not data:
                s.close()
                return
            s.sendall(data.upper())

    def open_channel(self, kind, dest, src, timeout=None):
        self.opened.append((kind, dest))
        return SockChannel(socket.create_connection(self.server.getsockname()))


def test_tunnel_carries_bytes_both_ways_and_closes():
    t = FakeTransport()
    tunnel = remote._Tunnel(t, "10.0.0.100", 9999, 3)
    assert t.opened == [("direct-tcpip", ("10.0.0.100", 9999))]
    c = socket.create_connection(("127.0.0.1", tunnel.local_port), timeout=5)
    payload = b"select 1;" * 20000
    c.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = c.recv(65536)
        assert chunk
        got += chunk
    assert got == payload.upper()
    # a second client gets a channel of its own
    c2 = socket.create_connection(("127.0.0.1", tunnel.local_port), timeout=5)
    c2.sendall(b"x")
    assert c2.recv(10) == b"X"
    assert len(t.opened) == 2
    tunnel.close()
    assert c.recv(10) == b""
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", tunnel.local_port), timeout=2)
    t.server.close()


def test_pg_connect_reports_a_refused_target(ctx, mocker):
    class Refusing:
        def open_channel(self, *a, **k):
            raise paramiko.ChannelException(2, "Connect failed")

    conn = mocker.Mock(transport=Refusing())
    mocker.patch.object(remote, "connection", return_value=conn)
    with pytest.raises(HaError) as e:
        with remote.pg_connect(ctx, "db01", port=5433):
            pass
    assert e.value.message == "db01: 127.0.0.1:5433: nothing accepts connections (Connect failed)"
    assert e.value.code == HaError.STATE


def test_pg_connect_params_password_from_pgpass_and_cleanup(tmp_path, mocker):
    write_pgpass(tmp_path, "10.0.0.100:9999:postgres:postgres:vip-pw\n*:5432:*:postgres:pg-pw\n")
    ctx = make_ctx(write_inventory(tmp_path, extra_all="pgpass=pgpass\n"))
    mocker.patch.object(remote, "connection", return_value=mocker.Mock(transport="T"))
    tunnels = []

    class Tunnel:
        def __init__(self, transport, target, port, timeout):
            self.args = (transport, target, port, timeout)
            self.local_port = 40000 + len(tunnels)
            self.closed = False
            tunnels.append(self)

        def close(self):
            self.closed = True

    mocker.patch.object(remote, "_Tunnel", Tunnel)
    pg = mocker.Mock()
    connect = mocker.patch("psycopg2.connect", return_value=pg)
    with remote.pg_connect(ctx, "db01", port=9999, target="10.0.0.100") as got:
        assert got is pg
        assert tunnels[0].args == ("T", "10.0.0.100", 9999, 3)
        kw = connect.call_args.kwargs
        assert kw["host"] == "127.0.0.1" and kw["port"] == 40000
        assert kw["password"] == "vip-pw" and kw["user"] == "postgres"
        assert kw["sslmode"] == "disable" and kw["passfile"] == remote._NO_PASSFILE
        assert pg.autocommit is True
        assert not tunnels[0].closed
    pg.close.assert_called_once()
    assert tunnels[0].closed
    # default port = the host's pg_port var; password from the wildcard line
    with remote.pg_connect(ctx, "db02"):
        assert tunnels[1].args[1:3] == ("127.0.0.1", 5432)
        assert connect.call_args.kwargs["password"] == "pg-pw"


def test_pg_connect_login_failure_is_one_line_and_closes_tunnel(ctx, mocker):
    import psycopg2
    mocker.patch.object(remote, "connection", return_value=mocker.Mock(transport="T"))
    closed = []
    tunnel = mocker.Mock(local_port=1, close=lambda: closed.append(1))
    mocker.patch.object(remote, "_Tunnel", return_value=tunnel)
    mocker.patch("psycopg2.connect", side_effect=psycopg2.OperationalError(
        'connection to server at "127.0.0.1", port 1 failed: FATAL:  password authentication'
        ' failed for user "postgres"\n'))
    with pytest.raises(HaError) as e:
        with remote.pg_connect(ctx, "db01"):
            pass
    assert e.value.message.startswith("db01: 127.0.0.1:5432 (postgres as postgres): connection to")
    assert "\n" not in e.value.message
    assert closed == [1]


def test_a_probe_never_runs_without_a_time_limit(ctx, monkeypatch):
    """Chaos seed 41 step 20: db01's network was cut while db.failover read crm_mon on it;
    the read never ended (12 minutes, then the operator killed the task). A probe without a
    timeout now gets hatasks.probe_timeout, crm_mon reads get 30 s, and opening a session on
    a connection bounds its wait too."""
    import types

    from hatasks import crm

    seen = []

    class Conn:
        user = "root"

        def run(self, line, **kw):
            seen.append(kw.get("timeout"))
            return invoke.Result(stdout="", exited=0)

    monkeypatch.setattr(remote, "connection", lambda ctx, h: Conn())
    remote.run(ctx, "db01", "true", probe=True)
    remote.run(ctx, "db01", "true", probe=True, timeout=7)
    ctx.config.hatasks.probe_timeout = 45
    remote.run(ctx, "db01", "true", probe=True)
    assert seen == [300, 7, 45]
    seen.clear()
    monkeypatch.setattr(remote, "run", lambda ctx, h, cmd, **kw: seen.append(kw.get("timeout")) or
                        invoke.Result(stdout="", exited=1))
    with pytest.raises(HaError):
        crm.crm_status(ctx, "db", only=["db01"])   # crm_mon failed: no view
    assert seen and seen[0] == crm.CRM_MON_TIMEOUT == 30
    # the session-open bound is set on every connection opened
    opened = types.SimpleNamespace(open=lambda: None, transport=types.SimpleNamespace(),
                                   hatasks_timeout=10, host="db01", port=22)
    remote._open(opened, remote.host(ctx, "db01"))
    assert opened.transport.channel_timeout == 30
