"""Each option reads the same in every task: one help text per option name across the whole
hatasks collection (the shared texts live in hatasks/base.py HELP), except the options listed
in SAYS_WHICH, whose text has to say something that differs from task to task."""

import collections

from hatasks.base import HELP
from hatasks.namespace import build

#: option name -> why its help differs between tasks (kept honest: each must differ)
SAYS_WHICH = {
    "cluster": "which clusters: one kind's only one, 'db', every one or 'all', or a lock's",
    "host": "which host, and what is done on it",
    "node": "which node, and what is done to it (an inventory host, or a pgpool node id)",
    "timeout": "what is waited for, and its default (30, 60, 120 or 300 seconds)",
    "force": "what each task does anyway",
    "port": "which port: to start on, to connect to, or the maintenance port",
    "to": "where the group goes (failback of db or lb, or db.recover --failback)",
    "source": "the newest-data backend (sync.resync) or a split brain's winner (db.recover)",
    "resource": "one resource's failure (hb.cleanup), or its move/ban constraints (hb.clear)",
    "dest": "the directory of a dump (pg.dumpall) or of vacuum's log (pg.vacuum)",
}


def help_texts(collection):
    """option name -> {help text: [tasks]} over every task of ``collection``."""
    seen = collections.defaultdict(lambda: collections.defaultdict(list))

    def walk(coll, prefix):
        for name, t in coll.tasks.items():
            for arg in t.get_arguments():
                seen[arg.name][arg.help].append(prefix + name)
        for name, sub in coll.collections.items():
            walk(sub, f"{prefix}{name}.")

    walk(collection, "")
    return seen


def test_one_option_reads_the_same_in_every_task():
    seen = help_texts(build())
    twice = {opt: dict(texts) for opt, texts in seen.items()
             if len(texts) > 1 and opt not in SAYS_WHICH}
    assert twice == {}
    # the exceptions are still exceptions (else they belong in HELP, or out of this list)
    assert {opt for opt in SAYS_WHICH if len(seen[opt]) < 2} == set()


def test_the_shared_texts_are_the_ones_used():
    seen = help_texts(build())
    for opt in ("yes", "format", "mode", "method", "quiet"):
        assert list(seen[opt]) == [HELP[opt]], opt
    assert list(seen["watch_"]) == [HELP["watch"]]
    # every mutating task asks, and says how not to be asked
    assert len(seen["yes"][HELP["yes"]]) >= 25
    assert "needed without a terminal" in HELP["yes"]


def test_every_option_has_a_help_text():
    seen = help_texts(build())
    assert {opt: texts[None] for opt, texts in seen.items() if None in texts} == {}


def test_help_texts_survive_reading_the_arguments_twice():
    task = build().collections["hb"]["status"]
    first = {a.name: a.help for a in task.get_arguments()}
    assert first["format"] == HELP["format"]
    assert {a.name: a.help for a in task.get_arguments()} == first
