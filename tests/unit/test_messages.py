"""One-line messages that name the option and the rule, also for values from Python callers."""

import pytest

from hatasks import checks, core_tasks, hb, journal, remote, sync
from hatasks.errors import HaError


def body(task):
    """The task's own function (without the decorator that turns errors into exits)."""
    return task.body.__wrapped__


def refused(fn, *args, **kwargs):
    with pytest.raises(HaError) as exc:
        fn(*args, **kwargs)
    assert exc.value.code == HaError.USAGE
    return exc.value.message


def test_archive_is_named_as_archive(ctx, fake):
    assert refused(sync.cleanup, ctx, archive="") == "--archive: an empty value is not allowed"
    assert refused(sync.cleanup, ctx, archive="tmp/x").startswith("--archive 'tmp/x': give an absolute")
    assert fake.calls == []


@pytest.mark.parametrize("host", ["", "db01\n"])
def test_an_empty_host_is_not_every_host(ctx, fake, host):
    assert refused(sync.cleanup, ctx, delete=True, host=host, yes=True).startswith("--host")
    assert refused(body(sync.install_recovery_task), ctx, host=host, yes=True).startswith("--host")
    assert fake.calls == []


def test_a_leading_dot_names_the_rule():
    msg = refused(remote.check_value, "remove-datadir", "../data")
    assert msg == ("--remove-datadir '../data': a value may not start with '.' (it must begin"
                   " with a letter, a digit, _ or /)")
    assert "character(s)  " not in refused(remote.check_value, "host", ",x")


@pytest.mark.parametrize("value", ["db01\n", "db01\r", "db\t01", "5\n"])
def test_a_trailing_newline_or_tab_is_refused_everywhere(value):
    assert "not allowed" in refused(remote.check_value, "host", value)
    assert "control characters" in refused(checks.port, value)
    assert "control characters" in refused(checks.positive, "timeout", value)
    assert "control characters" in refused(checks.whole, "keep", value, 1, 10)
    with pytest.raises(HaError):
        journal.operation(None, value, "x").__enter__()


def test_lines_out_of_range_is_a_range_error_before_anything_runs(ctx, fake):
    msg = refused(hb.log, ctx, "db01", lines="99999999999999999999")
    assert msg == "--lines '99999999999999999999': out of range (1-1000000 lines)"
    assert fake.calls == []


@pytest.mark.parametrize("value, words", [
    ("abc", "a whole number please"), ("1.5", "a whole number please"),
    ("-1", "out of range"), (True, "a whole number please")])
def test_whole_names_option_and_range(value, words):
    msg = refused(checks.whole, "limit", value, 0, 100, "records")
    assert msg == f"--limit {value!r}: {words} (0-100 records)"


def test_history_checks_its_cluster_filter(ctx):
    assert "not allowed" in refused(body(core_tasks.history), ctx, cluster="db;id")
    assert "out of range" in refused(body(core_tasks.history), ctx, limit=-1)
