"""output.py: one place for table/json rendering."""

import json

import pytest

from hatasks import output
from hatasks.errors import UsageError

DATA = {"backends": [{"node_id": 0, "host": "db01", "status": "up"},
                     {"node_id": 1, "host": "db02", "status": "down"}],
        "degenerated": True}


def test_json_is_the_data_indented(capsys):
    output.emit(DATA, "json")
    out = capsys.readouterr().out
    assert json.loads(out) == DATA
    assert out.startswith('{\n  "backends": [')


def test_json_default_str_for_odd_values(capsys):
    import datetime
    output.emit({"t": datetime.date(2026, 11, 25)}, "json")
    assert json.loads(capsys.readouterr().out) == {"t": "2026-11-25"}


def test_table_from_list_of_dicts(capsys):
    output.emit(DATA, "table", table=lambda d: d["backends"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["node_id", "host", "status"]
    assert lines[2].split() == ["0", "db01", "up"]
    assert lines[3].split() == ["1", "db02", "down"]


def test_table_from_headers_and_rows():
    text = output.render(None, "table", table=(["a", "b"], [[1, None], [True, ["x", "y"]]]))
    lines = text.splitlines()
    assert lines[0].split() == ["a", "b"]
    assert lines[2].split() == ["1"]
    assert lines[3].split() == ["yes", "x,", "y"]


def test_several_titled_tables():
    text = output.render(DATA, "table", table=[
        ("Backends", DATA["backends"]),
        ("Summary", (["degenerated"], [[DATA["degenerated"]]])),
    ])
    parts = text.split("\n\n")
    assert parts[0].splitlines()[0] == "Backends"
    assert parts[1].splitlines()[0] == "Summary"
    assert parts[1].splitlines()[-1].strip() == "yes"


def test_empty_table_says_none():
    assert output.render([], "table") == "(none)"


def test_dict_without_table_spec_is_key_value():
    text = output.render({"newest": "db02", "degenerated": False}, "table")
    assert text.splitlines() == ["newest       db02", "degenerated  no"]


@pytest.mark.parametrize("fmt", ["yaml", "", "JSON", None])
def test_unknown_format_is_a_usage_error(fmt, capsys):
    with pytest.raises(UsageError, match="--format"):
        output.emit(DATA, fmt)
    assert capsys.readouterr().out == ""


def test_validate_and_resolve_format(tmp_path):
    from invoke import Context

    from conftest import make_ctx

    assert output.validate_format("json") == "json"
    ctx = make_ctx(tmp_path, format="json")
    assert output.resolve_format(ctx) == "json"
    assert output.resolve_format(ctx, "table") == "table"
    assert output.resolve_format(Context()) == "table"


# ---- progress on long steps


class Tty:
    """A stream that says it is a terminal and keeps what was written."""

    def __init__(self, tty=True):
        self.tty, self.text = tty, ""

    def isatty(self):
        return self.tty

    def write(self, s):
        self.text += s

    def flush(self):
        pass


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_progress_line_bytes_share_rate_eta():
    line = output.progress_line("db02: import", 250_000_000, 1_000_000_000, 5.0)
    assert line == "db02: import  250.0 MB of 1.0 GB (25 %), 50.0 MB/s, ETA 15s"


def test_progress_line_without_total_has_no_eta():
    assert output.progress_line("db01: dump", 1500, None, 2.0) == "db01: dump  1.5 kB, 750 B/s"


def test_progress_line_tables_and_long_eta():
    line = output.progress_line("verify", 10, 610, 2.0, unit="tables")
    assert line == "verify  10 tables of 610 tables (1 %), 5.0 tables/s, ETA 2m00s"


def test_progress_on_a_terminal_updates_one_line_in_place_at_most_every_interval():
    tty, clock = Tty(), Clock()
    p = output.Progress("db02: basebackup", total=1000, stream=tty, interval=0.3, clock=clock)
    clock.t += 1
    p.update(100)
    clock.t += 0.1
    p.update(200)            # too soon: not drawn
    clock.t += 0.3
    p.update(400)
    assert tty.text.count("\r") == 2 and "\n" not in tty.text
    assert tty.text.endswith("db02: basebackup  400 B of 1.0 kB (40 %), 286 B/s, ETA 2s")
    clock.t += 0.6
    figures = p.finish(1000)
    assert tty.text.endswith("\r")    # the line is cleared: the step's own line follows
    assert figures == {"bytes": 1000, "seconds": 2.0, "rate": 500.0}


def test_progress_is_silent_when_not_a_terminal_but_still_gives_the_figures():
    pipe, clock = Tty(tty=False), Clock()
    p = output.Progress("db01: dump", stream=pipe, clock=clock)
    for i in range(10):
        clock.t += 1
        p.update(i * 1000)
    assert pipe.text == ""
    assert p.finish() == {"bytes": 9000, "seconds": 10.0, "rate": 900.0}


def test_progress_quiet_wins_over_a_terminal():
    assert output.progress_wanted(Tty(), quiet=True) is False
    assert output.progress_wanted(Tty()) is True
    assert output.progress_wanted(Tty(tty=False)) is False


def test_watching_polls_only_when_shown():
    calls = []
    with output.watching(output.Progress("x", stream=Tty(tty=False)), lambda: calls.append(1), every=0.01):
        import time
        time.sleep(0.05)
    assert calls == []


def test_watching_feeds_the_progress_and_survives_a_failing_measure():
    import threading
    tty = Tty()
    seen = threading.Event()
    values = iter([RuntimeError("gone"), (50, 100), 70])

    def measure():
        v = next(values, 70)
        if isinstance(v, Exception):
            raise v
        if v == 70:
            seen.set()
        return v

    p = output.Progress("db02: recovery", stream=tty, interval=0)
    with output.watching(p, measure, every=0.01):
        assert seen.wait(5)
    assert p.done == 70 and p.total == 100
    assert "(70 %)" in tty.text or "(50 %)" in tty.text


def test_progress_line_estimated_total():
    line = output.progress_line("db01: dump", 100_000_000, 400_000_000, 2.0, approx=True)
    assert line == "db01: dump  100.0 MB of ~400.0 MB (25 %), 50.0 MB/s, ETA 6s"
