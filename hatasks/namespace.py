"""The root collection: one sub-collection per tool, configured once here."""

from invoke import Collection

from .config import DEFAULTS


def build():
    """Return the root collection used by both ``tasks.py`` and ``fabfile.py``."""
    ns = Collection()
    # sub-collections are added here, one line each
    ns.add_task(__import__("hatasks.core_tasks").core_tasks.history)
    ns.add_collection(Collection.from_module(__import__("hatasks.hb").hb))
    ns.add_collection(Collection.from_module(__import__("hatasks.web").web))
    ns.add_collection(Collection.from_module(__import__("lab.tasks").tasks, name="lab"))
    ns.add_collection(Collection.from_module(__import__("hatasks.pgpool").pgpool))
    ns.add_collection(Collection.from_module(__import__("hatasks.pg").pg))
    ns.add_task(__import__("hatasks.status").status.status)
    ns.add_collection(Collection.from_module(__import__("hatasks.sync").sync))
    ns.add_collection(Collection.from_module(__import__("hatasks.db").db))
    ns.add_collection(Collection.from_module(__import__("hatasks.lb").lb))
    ns.add_collection(Collection.from_module(__import__("hatasks.notify").notify))
    ns.configure(DEFAULTS)
    return ns
