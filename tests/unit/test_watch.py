"""Watch mode: frames redrawn in place on a terminal, plain frames on a pipe, one JSON document
per line, changed lines marked, Ctrl-C leaving cleanly; `status --watch` and `hb.status --watch`
on a faked collection."""

import io
import json
import re

import pytest

from hatasks import hb, status, watch
from hatasks.errors import HaError, UsageError


class Tty(io.StringIO):
    def isatty(self):
        return True


def frames_of(*texts):
    it = iter(texts)

    def frame():
        text = next(it)
        if isinstance(text, HaError):
            raise text
        return {"text": text}, text
    return frame


def interrupt_after(n):
    """A sleep that lets N intervals pass, then acts as Ctrl-C."""
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        if len(slept) >= n:
            raise KeyboardInterrupt
    return sleep, slept


def test_seconds_of_the_watch_option():
    assert watch.seconds(None) is None
    assert watch.seconds(True) == 3.0
    assert watch.seconds("10") == 10.0
    for bad in ("0", "x", "-1", "99999"):
        with pytest.raises(UsageError, match="--watch"):
            watch.seconds(bad)


def test_mark_changes_marks_only_what_the_last_frame_did_not_have():
    assert watch.mark_changes(None, ["a", "b"]) == ["  a", "  b"]
    assert watch.mark_changes(["a", "b", "b"], ["b", "a", "c", "b", "b"]) == \
        ["  b", "  a", "* c", "  b", "* b"]


def test_on_a_terminal_each_frame_clears_the_screen_and_ctrl_c_leaves_cleanly():
    out = Tty()
    sleep, slept = interrupt_after(2)
    shown = watch.loop(frames_of("node db01 online\nnode db02 online",
                                 "node db01 online\nnode db02 OFFLINE", "never"),
                       3, "table", "hatasks status", stream=out, sleep=sleep,
                       clock=lambda: 100.0)
    assert shown == 2 and slept == [3.0, 3.0]
    screens = out.getvalue().split(watch.CLEAR)
    assert screens[0] == "" and len(screens) == 3
    assert screens[1].startswith("Every 3s: hatasks status")
    assert "  node db02 online" in screens[1]
    assert "* node db02 OFFLINE" in screens[2] and "  node db01 online" in screens[2]
    assert out.getvalue().endswith("\n")  # the prompt comes back on a line of its own


def test_on_a_pipe_frames_follow_one_another_without_escape_codes():
    out = io.StringIO()
    watch.loop(frames_of("a", "b", "c"), 1, "table", "hb.status", stream=out,
               sleep=lambda s: None, frames=3)
    text = out.getvalue()
    assert "\033" not in text
    assert text.count("---- Every 1s: hb.status") == 3
    assert "  a\n" in text and "* b\n" in text and "* c\n" in text


def test_json_is_one_document_per_line_and_an_error_is_a_frame():
    out = Tty()
    watch.loop(frames_of("a", HaError("no node answered", HaError.UNREACHABLE), "c"), 1, "json",
               "status", stream=out, sleep=lambda s: None, frames=3)
    lines = out.getvalue().splitlines()
    docs = [json.loads(line) for line in lines]
    assert [d.get("text") for d in docs] == ["a", None, "c"]
    assert docs[1]["error"] == "no node answered" and docs[1]["code"] == HaError.UNREACHABLE
    assert all("watched_at" in d for d in docs) and "\033" not in out.getvalue()


def test_the_interval_counts_from_the_start_of_each_frame():
    times = iter([0.0, 1.25, 10.0, 10.5])
    sleep, slept = interrupt_after(2)
    watch.loop(frames_of("a", "b"), 3, "table", "x", stream=io.StringIO(), sleep=sleep,
               clock=lambda: next(times))
    assert slept == [1.75, 2.5]


def test_status_watch_refreshes_the_collection_and_exits_0_on_ctrl_c(ctx, mocker, capsys):
    calls = []

    def collect(ctx_, cluster=None):
        calls.append(cluster)
        healthy = len(calls) == 1
        return {"clusters": {}, "summary": [{"cluster": "db", "kind": "db", "healthy": healthy,
                                             "answered": True,
                                             "problems": [] if healthy else ["pgpool down"]}],
                "problems": [] if healthy else ["db: pgpool down"], "unreachable": {},
                "healthy": healthy, "seconds": 0.1}

    mocker.patch.object(status, "collect", side_effect=collect)
    sleep, _ = interrupt_after(2)
    mocker.patch.object(watch.time, "sleep", side_effect=sleep)
    assert status.status(ctx, watch_="2") is None  # left with Ctrl-C: no exit error
    out = capsys.readouterr().out
    assert calls == ["all", "all"]
    assert out.count("---- Every 2s: hatasks status") == 2
    assert re.search(r"^\* db +db +UNHEALTHY +pgpool down$", out, re.M)


def test_hb_status_watch_json(ctx, mocker, capsys):
    n = []

    def state(ctx_, cluster=None):
        n.append(cluster)
        return {"clusters": ["db"], "nodes": [], "resources": [], "failed_actions": [],
                "views": {"db": {"read_on": "db01", "unanswered": {}}}, "round": len(n)}

    mocker.patch.object(hb, "status", side_effect=state)
    sleep, _ = interrupt_after(3)
    mocker.patch.object(watch.time, "sleep", side_effect=sleep)
    hb.status_task(ctx, cluster="all", format="json", watch_=True)
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [d["round"] for d in docs] == [1, 2, 3] and n == [None, None, None]


def test_the_collection_time_alone_is_not_a_change():
    previous = ["== verdict (collected in 0.41 s): healthy"]
    assert watch.mark_changes(previous, ["== verdict (collected in 0.38 s): healthy"],
                              status.steady) == ["  == verdict (collected in 0.38 s): healthy"]
    assert watch.mark_changes(previous, ["== verdict (collected in 0.38 s): PROBLEMS:"],
                              status.steady)[0].startswith(watch.MARK)
