"""One way to reach a host: ssh connections, commands as root or postgres, fan-out, SQL.

Every task that talks to a cluster host goes through this module:

- :func:`run` runs a shell command on an inventory host over ssh (fabric). Commands run
  as root, or as the postgres OS user with ``user="postgres"``. hatasks always logs in
  as the inventory's login user (root unless ``ansible_user`` or the ssh config's
  ``User`` say otherwise) and switches with ``runuser`` (``sudo -n`` when the login is
  not root). That way a site needs one ssh key for its operators, no keys for the
  postgres account, and the postgres account's environment (HOME, ``.pgpass``,
  ``.pcppass``) is the real one.
- ``probe=True`` marks a read-only command: it runs even under ``inv --dry``. Any other
  command under ``--dry`` is printed as ``[dry] HOST (as USER): COMMAND`` and not sent.
- Unknown ssh host keys are rejected (fabric's default is to accept them): keys come
  from the ssh config's ``UserKnownHostsFile`` (else ``~/.ssh/known_hosts``) plus
  ``GlobalKnownHostsFile``. A host that does not answer within ``connect_timeout`` is an
  :class:`UnreachableError` naming it.
- :func:`pg_connect` gives a psycopg2 connection to PostgreSQL or pgpool as seen from a
  host, through an ssh direct-tcpip tunnel; the password comes from a libpq passfile
  (inventory var ``pgpass`` or ``PGPASSFILE``), never from a command line.
"""

import atexit
import contextlib
import importlib
import logging
import os
import re
import select
import shlex
import socket
import threading

import invoke

from hatasks import inventory as _inventory
from hatasks.shell import q
from hatasks.errors import HaError, UnreachableError, UsageError

# paramiko logs failures we already report as one line (e.g. "Secsh channel 3 open FAILED:
# Connection refused" when a tunnel's target is down); without a handler of its own, Python's
# last-resort handler would print them to the operator's terminal.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


class _Lazy:
    """A module imported on first attribute access: fabric and paramiko (with cryptography)
    cost a tenth of a second, which a task that never opens ssh (``--help``, ``history``, a
    refused command line) should not pay."""

    def __init__(self, name):
        self._name = name

    def __getattr__(self, attr):
        return getattr(importlib.import_module(self._name), attr)


fabric = _Lazy("fabric")
paramiko = _Lazy("paramiko")

# ---------------------------------------------------------------------------
# inventory
# ---------------------------------------------------------------------------

_inv_cache = {}
_inv_lock = threading.Lock()


def _hatasks_config(ctx):
    try:
        return ctx.config.hatasks
    except (AttributeError, KeyError):
        return {}


def _setting(ctx, key, default):
    conf = _hatasks_config(ctx)
    try:
        value = conf[key]
    except (KeyError, TypeError):
        value = getattr(conf, key, None)
    return default if value is None else value


def inventory(ctx):
    """The inventory named by ``ctx.config.hatasks.inventory`` (cached while unchanged)."""
    path = os.path.abspath(str(_setting(ctx, "inventory", "hosts.ini")))
    try:
        st = os.stat(path)
        stamp = (st.st_mtime_ns, st.st_size)
    except OSError:
        stamp = None
    with _inv_lock:
        cached = _inv_cache.get(path)
        if cached and cached[0] == stamp and stamp is not None:
            return cached[1]
        inv = _inventory.load(path)
        _inv_cache[path] = (stamp, inv)
        return inv


def host(ctx, name):
    """An inventory Host from a name or a Host (UsageError listing the known hosts)."""
    if isinstance(name, _inventory.Host):
        return name
    return inventory(ctx).host(name)


# the functions below take a parameter called ``host``, which hides the function
_resolve = host



# ---------------------------------------------------------------------------
# values that go into commands
# ---------------------------------------------------------------------------

_SAFE = re.compile(r"^[A-Za-z0-9_/][A-Za-z0-9_.,:@%+=/-]*\Z")


def check_value(name, value):
    """Return ``value`` as a str if it is safe as a host/node/resource name; else UsageError.

    Refused: empty, whitespace, shell metacharacters (anything but letters, digits and
    ``_ . , : @ % + = / -``) and a leading ``-`` (it would read as an option).
    """
    flag = name if str(name).startswith("-") else f"--{name}"
    text = "" if value is None else str(value)
    if not text:
        raise UsageError(f"{flag}: an empty value is not allowed")
    if text.startswith("-"):
        raise UsageError(f"{flag} {text!r}: a value may not start with '-'")
    if not _SAFE.match(text):
        bad = sorted({c for c in text if not re.match(r"[A-Za-z0-9_.,:@%+=/-]", c)})
        if not bad:
            # only the first character is wrong: . , : @ % + = may follow, not begin
            raise UsageError(f"{flag} {text!r}: a value may not start with {text[0]!r}"
                             " (it must begin with a letter, a digit, _ or /)")
        shown = " ".join(repr(c) for c in bad)
        raise UsageError(
            f"{flag} {text!r}: character(s) {shown} not allowed"
            " (letters, digits and _ . , : @ % + = / - only)"
        )
    return text


# ---------------------------------------------------------------------------
# connections
# ---------------------------------------------------------------------------

_conn_cache = {}
_conn_locks = {}
_cache_lock = threading.Lock()
_ssh_configs = {}


def _ssh_config(path):
    """Parsed ssh config file (cached by path and mtime)."""
    st = os.stat(path)
    key = (path, st.st_mtime_ns)
    conf = _ssh_configs.get(key)
    if conf is None:
        conf = paramiko.SSHConfig.from_path(path)
        _ssh_configs[key] = conf
    return conf


def _probe_timeout(ctx):
    try:
        return max(1, int(_setting(ctx, "probe_timeout", 300)))
    except (TypeError, ValueError):
        raise UsageError("hatasks.probe_timeout must be a whole number of seconds") from None


def _connect_timeout(ctx):
    try:
        return max(1, int(_setting(ctx, "connect_timeout", 10)))
    except (TypeError, ValueError):
        raise UsageError("hatasks.connect_timeout must be a whole number of seconds") from None


def _known_hosts_files(lookup, base_dir):
    """Files OpenSSH would read for this host: UserKnownHostsFile (default
    ~/.ssh/known_hosts) and GlobalKnownHostsFile (default /etc/ssh/ssh_known_hosts)."""
    files = []
    for key, default in (
        ("userknownhostsfile", "~/.ssh/known_hosts"),
        ("globalknownhostsfile", "/etc/ssh/ssh_known_hosts"),
    ):
        value = lookup.get(key) if lookup is not None else None
        for item in shlex.split(value) if value else [default]:
            p = os.path.expanduser(item)
            if not os.path.isabs(p):
                p = os.path.join(base_dir, p)
            files.append(p)
    return files


def _load_known_hosts(client, files, names, connect_name):
    """Load ``files`` into ``client`` and let keys listed under the host's alias also
    count for the name paramiko checks (the address, or ``[address]:port``)."""
    keys = paramiko.HostKeys()
    for f in files:
        if os.path.exists(f):
            try:
                client.load_system_host_keys(f)
                keys.load(f)
            except (OSError, paramiko.SSHException) as exc:
                raise UsageError(f"cannot read known_hosts file {f}: {exc}") from None
    if keys.lookup(connect_name) is None:
        for n in names:
            found = keys.lookup(n)
            if found is not None:
                for keytype in found.keys():
                    client.get_host_keys().add(connect_name, keytype, found[keytype])
                break


def connection(ctx, host):
    """The (cached, opened) fabric Connection to an inventory host.

    Cached per inventory, host and login for the life of the process; safe to call
    from several threads. UnreachableError if the host does not answer in time, refuses,
    rejects our key, or shows a host key that is not known.
    """
    h = _resolve(ctx, host)
    inv = inventory(ctx)
    timeout = _connect_timeout(ctx)
    key = (os.path.abspath(inv.path), h.name, timeout)
    with _cache_lock:
        conn = _conn_cache.get(key)
        if conn is not None and conn.is_connected and conn.transport.is_active():
            return conn
        lock = _conn_locks.setdefault(key, threading.Lock())
    with lock:
        with _cache_lock:
            conn = _conn_cache.get(key)
        if conn is not None and conn.is_connected and conn.transport.is_active():
            return conn
        conn = _new_connection(inv, h, timeout)
        _open(conn, h)
        with _cache_lock:
            _conn_cache[key] = conn
        return conn


def _new_connection(inv, h, timeout):
    ssh_path = h.vars.get("ssh_config")
    lookup = None
    if ssh_path:
        ssh_path = inv.resolve_path(ssh_path)
        try:
            sshconf = _ssh_config(ssh_path)
        except OSError as exc:
            raise UsageError(f"cannot read ssh_config {ssh_path}: {exc.strerror}") from None
        config = fabric.Config(ssh_config=sshconf)
        lookup = sshconf.lookup(h.name)
        base_dir = os.path.dirname(ssh_path)
        # the alias wins (its HostName, User, Port, keys); without a stanza for it,
        # fall back to ansible_host
        target = h.name if lookup.get("hostname") != h.name else h.address
    else:
        config = fabric.Config()
        base_dir = inv.dir
        target = h.address
    user = h.user or (lookup or {}).get("user") or "root"
    conn = fabric.Connection(
        target,
        user=user,
        port=h.port,
        config=config,
        connect_timeout=timeout,
        connect_kwargs={"banner_timeout": timeout, "auth_timeout": timeout},
    )
    if lookup is None:
        lookup = conn.ssh_config
    # IdentityFile relative to the ssh config's folder (as the lab writes them)
    keyfiles = conn.connect_kwargs.get("key_filename")
    if keyfiles:
        conn.connect_kwargs["key_filename"] = [
            k if os.path.isabs(os.path.expanduser(k)) else os.path.join(base_dir, k)
            for k in keyfiles
        ]
    conn.hatasks_host = h.name
    conn.hatasks_timeout = timeout
    conn.hatasks_known_hosts = _known_hosts_files(lookup, base_dir)
    conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    port = conn.port or 22
    connect_name = conn.host if port == 22 else f"[{conn.host}]:{port}"
    names = [lookup["hostkeyalias"]] if lookup.get("hostkeyalias") else []
    names += [h.name, conn.original_host] + [f"[{n}]:{port}" for n in (h.name,)]
    _load_known_hosts(conn.client, conn.hatasks_known_hosts, names, connect_name)
    return conn


def _reason(exc):
    if isinstance(exc, paramiko.BadHostKeyException):
        return "host key does not match known_hosts (possible impersonation)"
    if isinstance(exc, paramiko.AuthenticationException):
        return f"authentication failed ({exc})"
    if isinstance(exc, paramiko.SSHException) and "not found in known_hosts" in str(exc):
        return "unknown host key (not in known_hosts; add it after checking the fingerprint)"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        errs = {getattr(e, "strerror", None) or str(e) for e in exc.errors.values()}
        return "; ".join(sorted(errs))
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _open(conn, h):
    try:
        conn.open()
        # a new session on a connection whose peer's network was cut waits for an answer
        # that never comes (paramiko's default: an hour): bounded like a connect
        conn.transport.channel_timeout = 3 * conn.hatasks_timeout
    except (OSError, EOFError, paramiko.SSHException) as exc:
        with contextlib.suppress(Exception):
            conn.close()
        where = f"{conn.host}:{conn.port or 22}"
        raise UnreachableError(
            f"{h.name} ({where}) unreachable: {_reason(exc)}"
            f" [connect timeout {conn.hatasks_timeout}s]"
        ) from None


def close_all():
    """Close every cached connection (done at exit)."""
    with _cache_lock:
        conns = list(_conn_cache.values())
        _conn_cache.clear()
    for c in conns:
        with contextlib.suppress(Exception):
            c.close()


atexit.register(close_all)


# ---------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------


class CommandFailed(HaError, invoke.UnexpectedExit):
    """A remote command exited non-zero (``warn=False``). Both an :class:`HaError`
    (one-line message) and an ``invoke.UnexpectedExit`` (``.result``)."""

    def __init__(self, host, command, result):
        err = (result.stderr or result.stdout or "").strip().splitlines()
        tail = f": {err[-1][:300]}" if err else ""
        short = command if len(command) <= 200 else command[:197] + "..."
        HaError.__init__(self, f"{host}: `{short}` exited {result.exited}{tail}", HaError.STATE)
        self.result = result
        self.reason = None
        self.host = host
        self.command = command


def wrap(command, user="root", login="root"):
    """The command line sent over ssh to run ``command`` as ``user``.

    As root with a root login: ``command`` itself. As another user:
    ``runuser -u USER -- sh -c 'cd ~ 2>/dev/null; COMMAND'`` (HOME and the user's files
    are the real ones; the cd avoids "could not change directory" from /root). With a
    non-root login, ``sudo -n`` takes runuser's place.
    """
    if user == login:
        return command
    if user == "root":
        return f"sudo -n -- sh -c {q(command)}"
    inner = q(f"cd ~ 2>/dev/null; {command}")
    check_value("user", user)
    if login == "root":
        return f"runuser -u {user} -- sh -c {inner}"
    return f"sudo -n -u {user} -- sh -c {inner}"


def is_dry(ctx):
    """True under ``inv --dry``."""
    try:
        return bool(ctx.config.run.dry)
    except (AttributeError, KeyError):
        return False


def dry_print(host, command, user="root"):
    print(f"[dry] {host} (as {user}): {command}", flush=True)


def run(ctx, host, command, *, user="root", probe=False, hide=True, warn=False, timeout=None,
        **kwargs):
    """Run shell ``command`` on inventory ``host`` as ``user`` ("root" or "postgres").

    ``probe=True``: read-only, runs even under ``inv --dry``. Otherwise, under --dry the
    command is printed and a Result with exit 0 and empty output comes back.
    ``warn=False``: a non-zero exit raises :class:`CommandFailed` (an HaError).
    ``timeout``: seconds for the command; exceeded -> UnreachableError naming the host. A probe
    without one gets ``hatasks.probe_timeout`` (300 s): a host whose network is cut while a
    command runs never answers, and a read must not hang the task.
    Build ``command`` with ``q`` for every value.
    """
    h = _resolve(ctx, host)
    if timeout is None and probe:
        timeout = _probe_timeout(ctx)
    if not probe and is_dry(ctx):
        dry_print(h.name, command, user)
        return invoke.Result(stdout="", stderr="", command=command, exited=0,
                             hide=("stdout", "stderr"))
    conn = connection(ctx, h)
    line = wrap(command, user, conn.user)
    try:
        result = conn.run(
            line, hide=hide, warn=True, timeout=timeout, dry=False, in_stream=False,
            pty=False, **kwargs
        )
    except invoke.CommandTimedOut:
        _forget(ctx, h)   # a cut host's connection would hold the next command too
        raise UnreachableError(
            f"{h.name}: `{command[:200]}` did not finish within {timeout}s"
        ) from None
    except (OSError, EOFError, paramiko.SSHException) as exc:
        _forget(ctx, h)
        raise UnreachableError(f"{h.name}: connection lost: {_reason(exc)}") from None
    result.command = command
    if result.exited != 0 and not warn:
        raise CommandFailed(h.name, command, result)
    return result


def _forget(ctx, h):
    inv = inventory(ctx)
    with _cache_lock:
        for key in [k for k in _conn_cache if k[0] == os.path.abspath(inv.path) and k[1] == h.name]:
            conn = _conn_cache.pop(key)
            with contextlib.suppress(Exception):
                conn.close()


def probe_many(ctx, hosts, fn, max_workers=16):
    """Call ``fn(host_name)`` for every host in parallel threads.

    Returns ``{host_name: result}`` in the order of ``hosts``; a host whose call raised
    an HaError (or an ssh/socket/database error) maps to that error (an HaError), so one
    dead host never hides the others. Other exceptions (bugs) propagate.
    """
    names = [h.name if isinstance(h, _inventory.Host) else str(h) for h in hosts]
    if not names:
        return {}

    def one(name):
        try:
            return fn(name)
        except HaError as exc:
            return exc
        except (OSError, EOFError, paramiko.SSHException, invoke.Failure) as exc:
            return UnreachableError(f"{name}: {_reason(exc)}")
        except Exception as exc:
            import psycopg2

            if isinstance(exc, psycopg2.Error):
                return HaError(f"{name}: {_pg_message(exc)}", HaError.STATE)
            raise

    # daemon threads, not a ThreadPoolExecutor: the interpreter joins an executor's threads
    # at exit, so a read that a caller gave up on (status past its deadline, a host whose
    # connect hangs) held the process open after its output until the connect timed out
    slots = threading.BoundedSemaphore(max(1, min(max_workers, len(names))))
    results, bugs = [None] * len(names), {}

    def work(i, name):
        with slots:
            try:
                results[i] = one(name)
            except BaseException as exc:  # a bug: raised again in the caller's thread
                bugs[i] = exc

    threads = [threading.Thread(target=work, args=(i, n), daemon=True, name=f"hatasks-{n}")
               for i, n in enumerate(names)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if bugs:
        raise bugs[min(bugs)]
    return dict(zip(names, results))


# ---------------------------------------------------------------------------
# PostgreSQL / pgpool through an ssh tunnel
# ---------------------------------------------------------------------------


def _pg_message(exc):
    text = str(getattr(exc, "pgerror", None) or exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def _pgpass_fields(line):
    fields, cur, esc = [], [], False
    for ch in line:
        if esc:
            cur.append(ch)
            esc = False
        elif ch == "\\":
            esc = True
        elif ch == ":":
            fields.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    fields.append("".join(cur))
    return fields


def pgpass_lookup(path, hosts, port, dbname, user):
    """The password for (one of ``hosts``, port, dbname, user) in libpq passfile ``path``,
    libpq rules: first matching line wins, ``*`` matches anything. None if no match.
    UsageError if the file is readable by group/others (libpq ignores such files)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UsageError(f"cannot read pgpass file {path}: {exc.strerror}") from None
    if st.st_mode & 0o077:
        raise UsageError(
            f"pgpass file {path} is readable by others (mode {st.st_mode & 0o777:o}); chmod 600 it"
        )
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read pgpass file {path}: {exc.strerror}") from None
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = _pgpass_fields(line)
        if len(fields) < 5:
            continue
        h, p, d, u = fields[:4]
        pw = ":".join(fields[4:]) if len(fields) > 5 else fields[4]
        if (h == "*" or h in hosts) and (p == "*" or p == str(port)) and \
                (d == "*" or d == dbname) and (u == "*" or u == user):
            return pw
    return None


#: libpq must not read a passfile of its own (we looked the password up ourselves); a path that
#: does not exist is skipped silently, whereas /dev/null draws a "not a plain file" warning
_NO_PASSFILE = "/nonexistent/hatasks-looks-up-passwords-itself"


def _passfile(ctx, h):
    value = h.vars.get("pgpass")
    if value:
        return inventory(ctx).resolve_path(value)
    env = os.environ.get("PGPASSFILE")
    if env:
        return env
    return os.path.expanduser("~/.pgpass")


class _Tunnel:
    """A local listening socket on 127.0.0.1 whose connections are carried to
    ``target:port`` as seen from the ssh server (direct-tcpip channels)."""

    def __init__(self, transport, target, port, timeout):
        self.transport = transport
        self.target = target
        self.port = port
        self.timeout = timeout
        # opened first, so a refused connection is reported clearly, before libpq
        self._first = transport.open_channel(
            "direct-tcpip", (target, int(port)), ("127.0.0.1", 0), timeout=timeout
        )
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.local_port = self.listener.getsockname()[1]
        self._closing = threading.Event()
        self._pairs = []
        self._thread = threading.Thread(target=self._accept, daemon=True, name="hatasks-tunnel")
        self._thread.start()

    def _accept(self):
        while not self._closing.is_set():
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            if self._closing.is_set():
                sock.close()
                return
            try:
                chan = self._first or self.transport.open_channel(
                    "direct-tcpip", (self.target, int(self.port)), ("127.0.0.1", 0),
                    timeout=self.timeout,
                )
            except (OSError, EOFError, paramiko.SSHException):
                sock.close()
                continue
            self._first = None
            self._pairs.append((sock, chan))
            threading.Thread(target=self._pump, args=(sock, chan), daemon=True,
                             name="hatasks-tunnel-pump").start()

    @staticmethod
    def _pump(sock, chan):
        try:
            while True:
                readable, _, _ = select.select([sock, chan], [], [], 1.0)
                if sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        break
                    chan.sendall(data)
                if chan in readable:
                    data = chan.recv(65536)
                    if not data:
                        break
                    sock.sendall(data)
                if chan.closed:
                    break
        except (OSError, EOFError, paramiko.SSHException):
            pass
        finally:
            with contextlib.suppress(Exception):
                chan.close()
            with contextlib.suppress(Exception):
                sock.close()

    def close(self):
        self._closing.set()
        with contextlib.suppress(Exception):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        with contextlib.suppress(Exception):
            self.listener.close()
        self._thread.join(timeout=5)
        if self._first is not None:
            with contextlib.suppress(Exception):
                self._first.close()
        for sock, chan in self._pairs:
            with contextlib.suppress(Exception):
                chan.close()
            with contextlib.suppress(Exception):
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()


@contextlib.contextmanager
def pg_connect(ctx, host, port=None, dbname="postgres", target="127.0.0.1", *,
               user=None, autocommit=True, connect_timeout=None):
    """A psycopg2 connection to ``target:port`` as seen from inventory ``host``.

    ``port`` defaults to the host's ``pg_port`` var (5432); for pgpool pass
    ``port=pgpool_port`` and ``target`` = the VIP or the host's address. The database
    user is ``user`` or the ``pg_user`` var (postgres). The password comes from the libpq
    passfile named by the ``pgpass`` inventory var (relative to the inventory), else
    PGPASSFILE, else ~/.pgpass, looked up for the target, the host's name and address.
    Autocommit by default (VACUUM, SHOW work). Closed, tunnel too, when the block ends.
    UnreachableError if ssh fails; HaError (STATE) if nothing listens or the database
    refuses the login.
    """
    h = _resolve(ctx, host)
    port = int(port if port is not None else h.vars.get("pg_port") or 5432)
    user = user or h.vars.get("pg_user") or "postgres"
    timeout = connect_timeout or _connect_timeout(ctx)
    conn = connection(ctx, h)
    import psycopg2  # after the connection: a first import waits no ssh connect (status)
    where = f"{h.name}: {target}:{port}"
    try:
        tunnel = _Tunnel(conn.transport, target, port, timeout)
    except paramiko.ChannelException as exc:
        raise HaError(
            f"{where}: nothing accepts connections ({exc.text or 'connect failed'})",
            HaError.STATE,
        ) from None
    except (OSError, EOFError, paramiko.SSHException) as exc:
        _forget(ctx, h)
        raise UnreachableError(f"{h.name}: cannot open a tunnel: {_reason(exc)}") from None
    names = {target, h.name, h.address}
    if target in ("127.0.0.1", "::1", "localhost"):
        names |= {"localhost", "127.0.0.1", "::1"}
    password = pgpass_lookup(_passfile(ctx, h), names, port, dbname, user)
    params = dict(host="127.0.0.1", port=tunnel.local_port, dbname=dbname, user=user,
                  connect_timeout=timeout, sslmode="disable", gssencmode="disable",
                  application_name="hatasks", passfile=_NO_PASSFILE)
    if password is not None:
        params["password"] = password
    try:
        pg = psycopg2.connect(**params)
    except psycopg2.Error as exc:
        tunnel.close()
        raise HaError(f"{where} ({dbname} as {user}): {_pg_message(exc)}", HaError.STATE) from None
    except BaseException:
        tunnel.close()
        raise
    try:
        pg.autocommit = autocommit
        yield pg
    finally:
        with contextlib.suppress(Exception):
            pg.close()
        tunnel.close()


def sql_rows(ctx, host, query, params=None, **kw):
    """Run one query through :func:`pg_connect` (same keyword arguments) and return
    its rows as a list of dicts (column name -> value); [] for statements without rows.
    Build ``query`` with psycopg2.sql for identifiers; values go in ``params``."""
    import psycopg2

    with pg_connect(ctx, host, **kw) as pg:
        try:
            with pg.cursor() as cur:
                cur.execute(query, params)
                if cur.description is None:
                    return []
                cols = [d[0] for d in cur.description]
                return [dict(zip(cols, row)) for row in cur.fetchall()]
        except psycopg2.Error as exc:
            raise HaError(f"{_resolve(ctx, host).name}: {_pg_message(exc)}", HaError.STATE) from None
