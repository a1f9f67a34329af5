"""The root collection: one sub-collection per tool, configured once here."""

import importlib

from invoke import Collection

from hatasks.config import DEFAULTS

#: the root collection's parts, one line each: (its name on the command line, the module,
#: the task when the part is one root task, else None for the module's sub-collection)
PARTS = (
    ("history", "core_tasks", "history"),
    ("hb", "hb", None),
    ("web", "web", None),
    ("lab", None, None),  # the checkout's lab.tasks, when given
    ("pgpool", "pgpool", None),
    ("pg", "pg", None),
    ("status", "status", "status"),
    ("inventory", "inventory_tasks", None),
    ("sync", "sync", None),
    ("db", "db", None),
    ("lb", "lb", None),
    ("notify", "notify", None),
    ("lock", "lock_tasks", None),
)


def build(lab=None, only=None):
    """Return the root collection of ``tasks.py``, ``fabfile.py`` and the installed ``hatasks``
    command. ``lab``: the checkout's ``lab.tasks`` module (``tasks.py``/``fabfile.py`` pass it;
    the installed command has no lab). ``only``: the names of :data:`PARTS` to build (the
    others' modules are not even imported); None: all."""
    ns = Collection()
    for name, module, task in PARTS:
        if only is not None and name not in only:
            continue
        if module is None:
            if lab is not None:
                ns.add_collection(Collection.from_module(lab, name=name))
            continue
        mod = importlib.import_module(f"hatasks.{module}")
        if task:
            ns.add_task(getattr(mod, task))
        else:
            ns.add_collection(Collection.from_module(mod, name=name))
    ns.configure(DEFAULTS)
    return ns


def parts_needed(program):
    """The :data:`PARTS` that the command line an invoke ``program`` (``inv``, ``fab`` or
    ``hatasks``) has parsed needs: those of the tasks it names. None (the whole collection)
    for a task list, help or completion (``-l``, ``-h``/``--help``, ``--complete``), no task
    at all, an unknown name, or a program that has parsed no command line."""
    core = getattr(program, "core", None)
    if core is None:
        return None
    if any(program.args[flag].value for flag in ("list", "help", "complete")):
        return None
    return parts_named(core.unparsed)


def for_checkout(program, lab):
    """The root collection of ``tasks.py`` and ``fabfile.py`` for ``program``'s command line
    (see :func:`parts_needed`). ``lab``: the name of the checkout's lab module
    (``"lab.tasks"``), imported only when the command line needs the lab."""
    only = parts_needed(program)
    labtasks = importlib.import_module(lab) if only is None or "lab" in only else None
    return build(lab=labtasks, only=only)


def parts_named(words):
    """The :data:`PARTS` that the command-line ``words`` name as tasks (``hb.standby`` ->
    ``hb``), or None when they name none (then the whole collection is needed, e.g. for
    the closest names to a mistyped task)."""
    names = {name for name, _, _ in PARTS}
    found = {w.split(".", 1)[0] for w in words if not w.startswith("-")} & names
    return found or None
