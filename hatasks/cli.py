"""Command-line conventions of ``inv`` and ``fab`` for hatasks.

Bad input on the command line is refused like every other bad input: exit 2, one line
on stderr starting ``hatasks: error:``, no traceback, nothing run. Two seams carry it:

1. **Typed options** (:class:`CheckedArgument`, used by :class:`hatasks.base.HaTask`).
   Invoke turns each task parameter into a ``invoke.parser.Argument`` (``Task.get_arguments``,
   a documented override point of ``Task`` subclasses, chosen with ``@task(klass=...)``) and
   the parser stores every value through ``Argument.set_value``. Our subclass checks the
   raw string there, where the option is known: control characters and empty values are
   refused for every option; whole-number options must be whole numbers in a range. The
   argument keeps invoke's ``kind`` (``int``/``str``) so ``inv --help TASK`` is unchanged.

2. **Parse errors exit 2** (:func:`install`). ``inv`` is invoke's own ``Program`` instance
   (``invoke.main.program``; ``fab`` is fabric's ``Fab(Program)``), and ``Program.run``
   prints a ``ParseError`` and exits 1 before any hatasks code can catch it. But the task
   module (``tasks.py`` / ``fabfile.py``) is imported inside ``Program.parse_collection``,
   *before* ``Program.parse_tasks`` parses the task arguments and ``parse_cleanup`` handles
   ``--help TASK``. ``Program`` documents these methods as its subclassing seams; as the
   running instance's class cannot be replaced, :func:`install` wraps them on the class
   (once, idempotently) so that a ``ParseError`` leaves as ``invoke.Exit`` with code 2 and
   our one-line message (a mistyped task or option name gets the closest names, by
   ``difflib``). ``Program.execute`` is wrapped too: the tasks it runs load the inventory
   checked as a whole (:func:`hatasks.inventory.checking`), and a Ctrl-C that arrives
   outside a task body exits 130 instead of invoke's 1.
"""

import difflib
import re
import sys
import unicodedata

import invoke
from invoke.exceptions import ParseError
from invoke.parser import Argument
from invoke.program import Program

from hatasks import inventory

PREFIX = "hatasks: error: "
USAGE = 2

#: whole-number options: name -> (lowest, highest, unit); others get DEFAULT_RANGE
RANGES = {
    "timeout": (1, 86400, "seconds"),
    "wait": (1, 86400, "seconds"),
    "lines": (1, 1_000_000, "lines"),
    "limit": (0, 1_000_000, "records, 0 = all"),
}
DEFAULT_RANGE = (0, 2**31 - 1, "")
_WHOLE = re.compile(r"^[+-]?[0-9]+$")


def has_control(text):
    """True if ``text`` holds a control character (newline, tab, escape, DEL, C1...)."""
    return any(unicodedata.category(ch) == "Cc" for ch in str(text))


def _shown(value, limit=40):
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


class CheckedArgument(Argument):
    """An invoke ``Argument`` that refuses bad raw values while the command line is parsed."""

    @classmethod
    def of(cls, arg):
        """The checked twin of invoke's ``arg`` (same names, kind, default, help...)."""
        return cls(names=arg.names, kind=arg.kind, default=arg.default, help=arg.help,
                   positional=arg.positional, optional=arg.optional,
                   incrementable=arg.incrementable, attr_name=arg.attr_name)

    @property
    def flag(self):
        return f"--{self.name}"

    def set_value(self, value, cast=True):
        if cast and isinstance(value, str) and self.kind in (str, int, float):
            self.raw_value = value
            self._value = self.check(value)
            return
        super().set_value(value, cast)

    def check(self, value):
        """``value`` (a raw string) as ``kind``; ParseError naming the option otherwise."""
        if has_control(value):
            raise ParseError(f"{self.flag} {_shown(value)}: control characters are not allowed")
        if value == "":
            raise ParseError(f"{self.flag}: an empty value is not allowed")
        if self.kind is str:
            return value
        low, high, unit = RANGES.get(self.name, DEFAULT_RANGE)
        span = f"{low}-{high}" + (f" {unit}" if unit else "")
        if self.kind is int:
            if not _WHOLE.match(value.strip()):
                raise ParseError(f"{self.flag} {_shown(value)}: a whole number please ({span})")
            number = int(value)
        else:
            try:
                number = float(value)
            except ValueError:
                raise ParseError(f"{self.flag} {_shown(value)}: a number please ({span})") from None
            if number != number:  # NaN
                raise ParseError(f"{self.flag} {_shown(value)}: a number please ({span})")
        if not low <= number <= high:
            raise ParseError(f"{self.flag} {_shown(value)}: out of range ({span})")
        return number


def typed_arguments(args):
    """``args`` (from ``Task.get_arguments``) as :class:`CheckedArgument` objects."""
    return [a if isinstance(a, CheckedArgument) else CheckedArgument.of(a) for a in args]


# ---------------------------------------------------------------------------
# parse errors -> one line, exit 2
# ---------------------------------------------------------------------------

_NO_IDEA = re.compile(r"^No idea what (?P<token>'.*'|\".*\") is!$", re.S)
_NEEDS_VALUE = re.compile(r"^Flag <\w+: (?P<name>[\w-]+)[^>]*> needed value", re.S)
_NO_VALUE = re.compile(r"^Flag <\w+: (?P<name>[\w-]+)[^>]*> doesn't take any value", re.S)


def _one_line(text):
    return " ".join(str(text).replace("\r", "\\r").replace("\n", "\\n").split()) or "bad input"


def _suggest(word, choices, n=3):
    close = difflib.get_close_matches(word, list(choices), n=n, cutoff=0.5)
    return f"; did you mean {', '.join(close)}?" if close else ""


def _task_names(collection):
    names = []
    for name, aliases in collection.task_names.items():
        names.append(name)
        names.extend(aliases)
    return names


def _flags(context):
    return [f for f in (context.flags if context is not None else {}) if f.startswith("--")]


def parse_message(exc, collection=None):
    """Our one-line message (without the prefix) for invoke's ``ParseError`` ``exc``."""
    msg = str(exc)
    ctx = getattr(exc, "context", None)
    task = getattr(ctx, "name", None)
    where = f"{task}: " if task else ""
    if ctx is not None:
        # invoke gives an unknown option of a task that still awaits a positional value to
        # that positional ("hb.standby --nod db01" stores '--nod' as the node)
        for arg in ctx.positional_args:
            raw = arg.raw_value
            if isinstance(raw, str) and raw.startswith("-"):
                return (f"{where}unknown option {raw}{_suggest(raw, _flags(ctx))}"
                        f" (inv --help {task} lists its options)")
    m = _NO_IDEA.match(msg)
    if m:
        token = m.group("token")[1:-1]
        if token.startswith("-"):
            return (f"{where}unknown option {token}{_suggest(token, _flags(ctx))}"
                    + (f" (inv --help {task} lists its options)" if task else ""))
        if task:
            # a value where none was expected, or a task name after a task
            hint = _suggest(token, _task_names(collection)) if collection is not None else ""
            return (f"unexpected {_shown(token)} after {task}: not a task"
                    f"{hint or ' nor an option value'} (inv -l lists every task)")
        hint = _suggest(token, _task_names(collection)) if collection is not None else ""
        return f"no task named {_shown(token)}{hint} (inv -l lists every task)"
    if "did not receive required positional arguments" in msg and ctx is not None:
        missing = ", ".join(f"--{a.name}" for a in ctx.missing_positional_args)
        return f"{where}missing {missing} (required; inv --help {task} shows its options)"
    m = _NEEDS_VALUE.match(msg)
    if m:
        return f"{where}--{m.group('name')} needs a value"
    m = _NO_VALUE.match(msg)
    if m:
        return f"{where}--{m.group('name')} takes no value"
    return where + _one_line(msg)


def _usage_exit(message):
    return invoke.Exit(PREFIX + _one_line(message), code=USAGE)


def _wrap_parse(original):
    def wrapper(self, *args, **kwargs):
        try:
            return original(self, *args, **kwargs)
        except ParseError as exc:
            raise _usage_exit(parse_message(exc, getattr(self, "collection", None))) from None
        except (ValueError, OverflowError) as exc:
            # a task not made with hatasks.base.task still gets invoke's plain casts
            raise _usage_exit(f"bad value: {exc}") from None
        except BrokenPipeError:
            quiet_stdout()
            raise invoke.Exit(code=141) from None

    wrapper.__wrapped__ = original
    wrapper.hatasks_cli = True
    return wrapper


def _wrap_tasks(original):
    parse = _wrap_parse(original)

    def parse_tasks(self, *args, **kwargs):
        parse(self, *args, **kwargs)
        # tell each task the name it was called by, for its interrupt message
        for context in self.tasks or []:
            try:
                self.collection[context.name].hatasks_called_as = context.name
            except (KeyError, ValueError, TypeError, AttributeError):
                pass

    parse_tasks.__wrapped__ = original
    parse_tasks.hatasks_cli = True
    return parse_tasks


def _wrap_execute(original):
    def execute(self, *args, **kwargs):
        try:
            with inventory.checking():
                return original(self, *args, **kwargs)
        except KeyboardInterrupt:
            raise invoke.Exit(code=130) from None

    execute.__wrapped__ = original
    execute.hatasks_cli = True
    return execute


def quiet_stdout():
    """Point stdout at /dev/null: the reader went away (``| head``); later writes and the
    flush at exit must not raise again."""
    import os

    try:
        fd = sys.stdout.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def install(program_class=Program):
    """Install the command-line conventions on invoke's ``Program`` (idempotent)."""
    for name, wrap in (("parse_tasks", _wrap_tasks), ("parse_cleanup", _wrap_parse),
                       ("execute", _wrap_execute)):
        current = getattr(program_class, name)
        if not getattr(current, "hatasks_cli", False):
            setattr(program_class, name, wrap(current))
    return program_class
