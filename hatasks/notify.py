"""Mail a summary of each scenario (the runbook's MailTo resources), when configured.

Settings (invoke.yaml or `inv -f FILE`), all under `hatasks.notify`:

    hatasks:
      notify:
        smtp_host: mail.example.com   # no smtp_host: no mail is sent
        smtp_port: 25
        from: hatasks@example.com
        to: [dba@example.com]        # a list or a comma-separated string

Every scenario (db.failover, db.failback, db.maintenance, db.recover, lb.failover,
lb.failback, lb.recover) sends one message when it ends, success or failure: subject
`[hatasks] ACTION on HOST: ok|FAILED (...)`, body = what the scenario printed (state
before and after, the steps). Nothing is sent under `inv --dry`. A mail that cannot be
sent is a warning on stderr; it never changes the scenario's outcome.
"""

import contextlib
import functools
import inspect
import io
import socket
import sys

from hatasks import remote
from hatasks.base import task
from hatasks.errors import HaError, UsageError

MAX_BODY = 20000


def _get(obj, key):
    if obj is None:
        return None
    try:
        return obj[key]
    except (KeyError, TypeError, AttributeError):
        return getattr(obj, key, None)


def settings(ctx):
    """{"host", "port", "from", "to": [...]} or None when no smtp_host is configured."""
    conf = _get(_get(getattr(ctx, "config", None), "hatasks"), "notify")
    host = _get(conf, "smtp_host")
    if not host:
        return None
    port = _get(conf, "smtp_port") or 25
    try:
        port = int(port)
    except (TypeError, ValueError):
        raise UsageError(f"hatasks.notify.smtp_port must be a number, not {port!r}") from None
    if not 1 <= port <= 65535:
        raise UsageError(f"hatasks.notify.smtp_port {port} is out of range (1-65535)")
    to = _get(conf, "to") or []
    if isinstance(to, str):
        to = [t.strip() for t in to.split(",") if t.strip()]
    to = [str(t) for t in to]
    if not to:
        raise UsageError("hatasks.notify.to is empty: name at least one recipient")
    sender = _get(conf, "from") or f"hatasks@{socket.gethostname()}"
    return {"host": str(host), "port": port, "from": str(sender), "to": to}


def message(conf, subject, body):
    from email.message import EmailMessage  # imported when a mail is made, not at start-up

    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = conf["from"]
    msg["To"] = ", ".join(conf["to"])
    if len(body) > MAX_BODY:
        body = body[:MAX_BODY] + "\n[... truncated]\n"
    msg.set_content(body)
    return msg


def send(ctx, subject, body, timeout=10):
    """Send one mail with the configured SMTP server. Returns True when sent, False when
    notifications are not configured. HaError when the server refuses or does not answer."""
    conf = settings(ctx)
    if conf is None:
        return False
    import smtplib  # imported when a mail is sent, not at start-up

    try:
        with smtplib.SMTP(conf["host"], conf["port"], timeout=timeout) as smtp:
            smtp.send_message(message(conf, subject, body))
    except (OSError, smtplib.SMTPException) as exc:
        raise HaError(f"mail to {', '.join(conf['to'])} via {conf['host']}:{conf['port']} "
                      f"not sent: {exc}", HaError.UNREACHABLE) from None
    return True


class _Tee(io.TextIOBase):
    def __init__(self, stream, buf):
        self.stream = stream
        self.buf = buf

    def write(self, s):
        self.buf.write(s)
        return self.stream.write(s)

    def flush(self):
        self.stream.flush()

    def isatty(self):
        return self.stream.isatty()

    def fileno(self):
        return self.stream.fileno()


@contextlib.contextmanager
def scenario(ctx, action, detail=""):
    """Around a scenario: capture what it prints; at the end mail the summary (if configured
    and not --dry). The scenario's exception, if any, propagates unchanged."""
    try:
        conf = settings(ctx)
    except UsageError as exc:
        print(f"warning: notification disabled: {exc.message}", file=sys.stderr)
        conf = None
    if conf is None or remote.is_dry(ctx):
        yield
        return
    buf = io.StringIO()
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Tee(out, buf), _Tee(err, buf)
    outcome, why = "ok", ""
    try:
        yield
    except HaError as exc:
        outcome, why = "FAILED", exc.message
        raise
    except BaseException as exc:
        outcome, why = "FAILED", f"{type(exc).__name__}: {exc}"
        raise
    finally:
        sys.stdout, sys.stderr = out, err
        what = f"{action} {detail}" if detail else action
        subject = f"[hatasks] {what} on {socket.gethostname()}: {outcome}" + \
            (f" ({why[:120]})" if why else "")
        body = f"{action}: {outcome}\n" + (f"error: {why}\n" if why else "") + "\n" + buf.getvalue()
        try:
            send(ctx, subject, body)
        except HaError as exc:
            print(f"warning: {exc.message}", file=sys.stderr, flush=True)


def mails(action, detail=None):
    """Decorator of a scenario task: mail the summary of the scenario ACTION when it ends
    (`scenario` around the task). DETAIL: a format string of the task's arguments added to
    the subject, e.g. "--host {host}"."""

    def decorate(fn):
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(ctx, *args, **kwargs):
            text = ""
            if detail:
                bound = signature.bind(ctx, *args, **kwargs)
                bound.apply_defaults()
                text = detail.format(**bound.arguments)
            with scenario(ctx, action, text):
                return fn(ctx, *args, **kwargs)

        return wrapper

    return decorate


@task(help={"subject": "subject of the test mail"})
def test(ctx, subject="hatasks notification test"):
    """Send a test mail with the configured SMTP settings (hatasks.notify.*)."""
    conf = settings(ctx)
    if conf is None:
        raise UsageError("no hatasks.notify.smtp_host configured: nothing to send with")
    send(ctx, subject, f"This is a test of hatasks notifications from {socket.gethostname()}.\n")
    print(f"sent to {', '.join(conf['to'])} via {conf['host']}:{conf['port']}")
