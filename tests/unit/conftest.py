"""What every unit test shares: a ``ctx`` on an inventory, and ONE fake of the remote layer.

``FakeRemote`` stands in for the network only: ``remote.connection`` (ssh) and
``remote.pg_connect`` (PostgreSQL through the tunnel). The real ``remote.run`` and
``remote.sql_rows`` still run above it, so --dry, ``warn``, CommandFailed, the runuser wrapping
and a host that does not answer behave as in production. Answers come from a table:

    fake.on("crm_mon -1", (0, XML))              # a substring of the command -> (rc, stdout)
    fake.on("pcp_attach_node", Seq([(1, ""), (0, "")]))  # one after the other, the last repeats
    fake.on(lambda host, cmd: cmd.startswith("ss "), handler)  # handler(host, cmd) -> answer
    fake.sql("SHOW pool_nodes", rows)            # rows: list of dicts, or handler(call) -> rows
    fake.down.add("db02")                        # unreachable: UnreachableError from remote

Every command that reached a host is recorded in ``fake.calls`` as Call(host, user, command,
line, options): the command as the task built it, the line sent (runuser wrapping included) and
the options remote.run gave the connection; queries in ``fake.queries``.
A command nobody answers fails the test.
"""

import collections
import pathlib
import shlex

import invoke
import pytest
from psycopg2 import sql as pgsql

from hatasks import remote
from hatasks.errors import HaError, UnreachableError

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
HOSTS_INI = ROOT / "hosts.ini"

Call = collections.namedtuple("Call", "host user command line options")
Query = collections.namedtuple("Query", "host port dbname target query params")


def make_ctx(tmp_path, inventory=None, dry=False, **settings):
    """A MockContext on INVENTORY (default: the repository's hosts.ini) with a private state
    dir; ``dry`` is ``inv --dry``."""
    overrides = {"hatasks": dict({"inventory": str(inventory or HOSTS_INI),
                                  "state_dir": str(tmp_path / "state"),
                                  "connect_timeout": 5, "format": "table"}, **settings)}
    if dry:
        overrides["run"] = {"dry": True}
    return invoke.MockContext(config=invoke.Config(overrides=overrides))


@pytest.fixture
def ctx(tmp_path):
    return make_ctx(tmp_path)


@pytest.fixture
def dry_ctx(tmp_path):
    return make_ctx(tmp_path, dry=True)


def unwrap(line):
    """(user, command) of a line built by remote.wrap for a root login."""
    if line.startswith("runuser -u "):
        words = shlex.split(line)
        inner = words[-1]
        prefix = "cd ~ 2>/dev/null; "
        return words[2], inner[len(prefix):] if inner.startswith(prefix) else inner
    return "root", line


def query_text(query):
    """The SQL text of a str or a psycopg2.sql composition (identifiers double-quoted)."""
    if isinstance(query, str):
        return query
    if isinstance(query, pgsql.Composed):
        return "".join(query_text(part) for part in query.seq)
    if isinstance(query, pgsql.SQL):
        return query.string
    if isinstance(query, pgsql.Identifier):
        return ".".join('"%s"' % s.replace('"', '""') for s in query.strings)
    if isinstance(query, pgsql.Literal):
        return repr(query.wrapped)
    raise TypeError(f"not a query: {query!r}")


def _matches(needle, host, text):
    if callable(needle):
        return needle(host, text)
    return needle in text


class Seq(list):
    """Successive answers to the same command or query; the last one repeats."""


def _next(answer):
    if isinstance(answer, Seq):
        return answer.pop(0) if len(answer) > 1 else answer[0]
    return answer


class FakeRemote:
    """The network, answered from tables (see the module docstring)."""

    def __init__(self):
        self.rules = []
        self.sql_rules = []
        self.down = set()
        self.calls = []
        self.queries = []

    # ---- the tables
    def on(self, needle, answer=(0, "")):
        """Answer commands containing NEEDLE (or for which needle(host, command) is true)."""
        self.rules.insert(0, (needle, answer))
        return self

    def sql(self, needle, rows, host=None):
        """Answer queries containing NEEDLE (on HOST only, if given) with ROWS."""
        self.sql_rules.insert(0, (needle, host, rows))
        return self

    # ---- what the tests read
    @property
    def commands(self):
        return [c.command for c in self.calls]

    def sent(self, host=None):
        return [c.command for c in self.calls if host is None or c.host == host]

    # ---- ssh
    def answer(self, host, line, **options):
        user, command = unwrap(line)
        self.calls.append(Call(host, user, command, line, options))
        for needle, answer in self.rules:
            if _matches(needle, host, command):
                answer = _next(answer)
                if callable(answer):
                    answer = answer(host, command)
                if isinstance(answer, BaseException):
                    raise answer
                rc, out, err = (tuple(answer) + ("",))[:3]
                return invoke.Result(stdout=out, stderr=err, exited=rc, command=line)
        raise AssertionError(f"unexpected command on {host} as {user}: {command}")

    def connection(self, ctx, host):
        name = getattr(host, "name", host)
        if name in self.down:
            raise UnreachableError(f"{name} (10.231.0.x:22) unreachable: timed out")
        return _FakeConnection(self, name)

    # ---- PostgreSQL
    def rows(self, q):
        text = query_text(q.query)
        for needle, host, rows in self.sql_rules:
            if (host is None or host == q.host) and _matches(needle, q.host, text):
                rows = _next(rows)
                if callable(rows):
                    rows = rows(q)
                if isinstance(rows, BaseException):
                    raise rows
                return rows
        raise AssertionError(f"unexpected query on {q.host}: {text}")

    def pg_connect(self, ctx, host, port=None, dbname="postgres", target="127.0.0.1", **kw):
        name = remote.host(ctx, host).name
        if name in self.down:
            raise UnreachableError(f"{name} (10.231.0.x:22) unreachable: timed out")
        return _FakePg(self, name, port, dbname, target)


class _FakeConnection:
    user = "root"

    def __init__(self, fake, host):
        self.fake = fake
        self.host = host

    def run(self, line, **kw):
        return self.fake.answer(self.host, line, **kw)


class _FakeCursor:
    def __init__(self, pg):
        self.pg = pg
        self.description = None
        self._rows = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, query, params=None):
        q = Query(self.pg.host, self.pg.port, self.pg.dbname, self.pg.target, query, params)
        self.pg.fake.queries.append(q)
        rows = self.pg.fake.rows(q)
        if rows and isinstance(rows[0], dict):
            cols = list(rows[0])
            self._rows = [tuple(r[c] for c in cols) for r in rows]
        else:
            cols = ["?"]
            self._rows = [tuple(r) for r in rows]
        self.description = [(c,) for c in cols]

    def fetchall(self):
        rows, self._rows = self._rows, []
        return rows

    def fetchone(self):
        return self._rows.pop(0) if self._rows else None


class _FakePg:
    def __init__(self, fake, host, port, dbname, target):
        self.fake, self.host, self.port, self.dbname, self.target = fake, host, port, dbname, target

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def cursor(self):
        return _FakeCursor(self)


#: the unit tests that open real ssh connections (to a server of their own on loopback)
REAL_SSH_MODULES = ("test_remote",)


@pytest.fixture(autouse=True)
def no_real_ssh(request, monkeypatch):
    """No unit test reaches a host: an ssh connection a test did not fake (e.g. one a task
    opens ahead in a thread) fails as an unreachable host instead of connecting to the
    inventory's addresses (the lab's, which may be up while the unit tests run)."""
    if request.module.__name__.rsplit(".", 1)[-1] in REAL_SSH_MODULES:
        return

    def refuse(ctx, host, *a, **kw):
        raise UnreachableError(f"{getattr(host, 'name', host)}: no ssh in unit tests")

    monkeypatch.setattr(remote, "connection", refuse)


@pytest.fixture
def fake(monkeypatch):
    """The network for this test: a FakeRemote behind remote.connection and remote.pg_connect."""
    f = FakeRemote()
    monkeypatch.setattr(remote, "connection", f.connection)
    monkeypatch.setattr(remote, "pg_connect", f.pg_connect)
    return f


def fail(message, code=HaError.STATE):
    """An answer that makes the fake raise HaError(message)."""
    return HaError(message, code)


def psql_rows(text):
    """The rows of a psql aligned-table capture (header | ... then ---+---) as dicts, the way
    remote.sql_rows returns them."""
    lines = [ln for ln in text.splitlines() if "|" in ln and not set(ln) <= set("-+ ")]
    header = [c.strip() for c in lines[0].split("|")]
    return [dict(zip(header, (c.strip() for c in ln.split("|")))) for ln in lines[1:]]
