"""The root collection: one sub-collection per tool, configured once here."""

from invoke import Collection

from hatasks import core_tasks, db, hb, inventory_tasks, lb, notify, pg, pgpool, status, sync, web
from hatasks import lock_tasks
from hatasks.config import DEFAULTS


def build():
    """Return the root collection used by both ``tasks.py`` and ``fabfile.py``."""
    from lab import tasks as labtasks  # the lab's own package, only needed for the root collection

    ns = Collection()
    # sub-collections are added here, one line each
    ns.add_task(core_tasks.history)
    ns.add_collection(Collection.from_module(hb))
    ns.add_collection(Collection.from_module(web))
    ns.add_collection(Collection.from_module(labtasks, name="lab"))
    ns.add_collection(Collection.from_module(pgpool))
    ns.add_collection(Collection.from_module(pg))
    ns.add_task(status.status)
    ns.add_collection(Collection.from_module(inventory_tasks, name="inventory"))
    ns.add_collection(Collection.from_module(sync))
    ns.add_collection(Collection.from_module(db))
    ns.add_collection(Collection.from_module(lb))
    ns.add_collection(Collection.from_module(notify))
    ns.add_collection(Collection.from_module(lock_tasks, name="lock"))
    ns.configure(DEFAULTS)
    return ns
