"""Scenario mails (the runbook's MailTo resources) against a real SMTP conversation: a tiny
SMTP sink on 127.0.0.1 started here (socketserver), smtplib on the other side."""

import email
import socketserver
import threading

import invoke
import pytest

from hatasks import notify
from hatasks.errors import HaError, StateError, UsageError


class _Handler(socketserver.StreamRequestHandler):
    def reply(self, line):
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self):
        self.reply("220 sink ESMTP")
        mail_from, rcpt, data = None, [], None
        while True:
            line = self.rfile.readline()
            if not line:
                return
            cmd = line.decode(errors="replace").rstrip("\r\n")
            verb = cmd.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                self.reply("250 sink")
            elif verb == "MAIL":
                mail_from = cmd.split(":", 1)[1].strip()
                self.reply("250 ok")
            elif verb == "RCPT":
                rcpt.append(cmd.split(":", 1)[1].strip())
                self.reply("250 ok")
            elif verb == "DATA":
                self.reply("354 end with .")
                lines = []
                while True:
                    ln = self.rfile.readline()
                    if ln in (b".\r\n", b".\n", b""):
                        break
                    lines.append(ln[1:] if ln.startswith(b"..") else ln)
                data = b"".join(lines)
                self.server.messages.append({"from": mail_from, "to": list(rcpt), "data": data})
                self.reply("250 queued")
            elif verb == "RSET":
                mail_from, rcpt = None, []
                self.reply("250 ok")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 not implemented")


class Sink(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.messages = []


@pytest.fixture
def sink():
    server = Sink()
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield server
    server.shutdown()
    server.server_close()


def ctx_for(notify_conf, dry=False):
    overrides = {"hatasks": {"notify": notify_conf}}
    if dry:
        overrides["run"] = {"dry": True}
    return invoke.Context(config=invoke.Config(overrides=overrides))


def parsed(msg):
    return email.message_from_bytes(msg["data"])


def test_send_delivers_one_message(sink):
    ctx = ctx_for({"smtp_host": "127.0.0.1", "smtp_port": sink.server_address[1],
                   "from": "hatasks@lab.invalid", "to": "dba@lab.invalid, ops@lab.invalid"})
    assert notify.send(ctx, "subject line", "body text\n") is True
    assert len(sink.messages) == 1
    m = sink.messages[0]
    assert m["from"] == "<hatasks@lab.invalid>"
    assert m["to"] == ["<dba@lab.invalid>", "<ops@lab.invalid>"]
    msg = parsed(m)
    assert msg["Subject"] == "subject line"
    assert msg.get_payload().strip() == "body text"


def test_not_configured_sends_nothing():
    assert notify.send(invoke.Context(), "s", "b") is False
    assert notify.settings(ctx_for({"smtp_host": None})) is None


@pytest.mark.parametrize("conf,msg", [
    ({"smtp_host": "127.0.0.1", "smtp_port": 70000, "to": ["a@b"]}, "out of range"),
    ({"smtp_host": "127.0.0.1", "smtp_port": "x", "to": ["a@b"]}, "must be a number"),
    ({"smtp_host": "127.0.0.1", "to": []}, "name at least one recipient"),
])
def test_bad_settings(conf, msg):
    with pytest.raises(UsageError) as exc:
        notify.settings(ctx_for(conf))
    assert msg in exc.value.message


def test_scenario_mails_its_output_on_success(sink, capsys):
    ctx = ctx_for({"smtp_host": "127.0.0.1", "smtp_port": sink.server_address[1], "to": ["dba@x"]})
    with notify.scenario(ctx, "db.failover"):
        print("--- before\ncluster db: db01 online, db02 online")
        print("--- after\n  grp-pgpool: Started db02")
    assert "Started db02" in capsys.readouterr().out  # still printed for the operator
    msg = parsed(sink.messages[0])
    assert msg["Subject"].startswith("[hatasks] db.failover on ")
    assert msg["Subject"].endswith(": ok")
    body = msg.get_payload()
    assert "db.failover: ok" in body and "grp-pgpool: Started db02" in body


def test_scenario_mails_the_failure_and_reraises(sink):
    ctx = ctx_for({"smtp_host": "127.0.0.1", "smtp_port": sink.server_address[1], "to": ["dba@x"]})
    with pytest.raises(StateError):
        with notify.scenario(ctx, "db.failback"):
            print("--- before")
            raise StateError("refusing to fail back: both nodes must be online first")
    msg = parsed(sink.messages[0])
    assert "FAILED (refusing to fail back" in msg["Subject"]
    assert "error: refusing to fail back" in msg.get_payload()


def test_scenario_under_dry_sends_nothing(sink):
    ctx = ctx_for({"smtp_host": "127.0.0.1", "smtp_port": sink.server_address[1], "to": ["dba@x"]},
                  dry=True)
    with notify.scenario(ctx, "db.failover"):
        print("[dry] would ...")
    assert sink.messages == []


def test_unreachable_server_is_a_warning_not_a_failure(capsys):
    # a port nothing listens on: bind then close to get one
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    ctx = ctx_for({"smtp_host": "127.0.0.1", "smtp_port": port, "to": ["dba@x"]})
    with pytest.raises(HaError) as exc:
        notify.send(ctx, "s", "b", timeout=2)
    assert exc.value.code == HaError.UNREACHABLE
    with notify.scenario(ctx, "lb.failover"):
        print("done")
    assert "warning: mail to dba@x via 127.0.0.1" in capsys.readouterr().err


def test_mails_decorator_sends_one_summary_with_the_named_arguments(sink):
    ctx = ctx_for({"smtp_host": "127.0.0.1", "smtp_port": sink.server_address[1], "to": ["dba@x"]})

    @notify.mails("db.maintenance", "--host {host} --for {for_}")
    def maintenance(c, host, for_="reboot", yes=False):
        print(f"maintenance of {host}")
        return "result"

    assert maintenance(ctx, "db02", yes=True) == "result"
    assert len(sink.messages) == 1
    msg = parsed(sink.messages[0])
    assert msg["Subject"].startswith("[hatasks] db.maintenance --host db02 --for reboot on ")
    assert msg["Subject"].endswith(": ok")
    assert "maintenance of db02" in msg.get_payload()


def test_mails_decorator_keeps_the_task_signature_and_reraises(sink):
    import inspect

    ctx = ctx_for({"smtp_host": "127.0.0.1", "smtp_port": sink.server_address[1], "to": ["dba@x"]})

    @notify.mails("lb.failover")
    def failover(c, from_=None, timeout=60):
        """Move the group."""
        raise StateError("no other LB node is online")

    assert list(inspect.signature(failover).parameters) == ["c", "from_", "timeout"]
    assert failover.__doc__ == "Move the group."
    with pytest.raises(StateError):
        failover(ctx, timeout=5)
    msg = parsed(sink.messages[0])
    assert msg["Subject"].startswith("[hatasks] lb.failover on ")
    assert "FAILED (no other LB node is online)" in msg["Subject"]


@pytest.mark.parametrize("module,name,action", [
    ("db", "failover_task", "db.failover"), ("db", "failback_task", "db.failback"),
    ("db", "maintenance_task", "db.maintenance"), ("db", "recover_task", "db.recover"),
    ("lb", "failover_task", "lb.failover"), ("lb", "failback_task", "lb.failback"),
    ("lb", "recover_task", "lb.recover")])
def test_every_scenario_task_mails_its_summary(mocker, module, name, action):
    import importlib

    mod = importlib.import_module(f"hatasks.{module}")
    work = mocker.patch.object(mod, name.removesuffix("_task"))
    scenario = mocker.spy(notify, "scenario")
    ctx = invoke.Context()
    args = ("db01",) if name == "maintenance_task" else ()
    getattr(mod, name)(ctx, *args)
    work.assert_called_once()
    assert scenario.call_args.args[1] == action
    if name == "maintenance_task":
        assert scenario.call_args.args[2] == "--host db01 --for reboot"
