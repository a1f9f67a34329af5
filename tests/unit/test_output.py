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
