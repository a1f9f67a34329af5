"""The root collection: one sub-collection per tool, configured once here."""

from invoke import Collection

from hatasks import core_tasks, db, hb, inventory_tasks, lb, notify, pg, pgpool, status, sync, web
from hatasks.config import DEFAULTS


def build(lab=None):
    """Return the root collection of ``tasks.py``, ``fabfile.py`` and the installed ``hatasks``
    command. ``lab``: the checkout's ``lab.tasks`` module (``tasks.py``/``fabfile.py`` pass it;
    the installed command has no lab)."""
    ns = Collection()
    # sub-collections are added here, one line each
    ns.add_task(core_tasks.history)
    ns.add_collection(Collection.from_module(hb))
    ns.add_collection(Collection.from_module(web))
    if lab is not None:
        ns.add_collection(Collection.from_module(lab, name="lab"))
    ns.add_collection(Collection.from_module(pgpool))
    ns.add_collection(Collection.from_module(pg))
    ns.add_task(status.status)
    ns.add_collection(Collection.from_module(inventory_tasks, name="inventory"))
    ns.add_collection(Collection.from_module(sync))
    ns.add_collection(Collection.from_module(db))
    ns.add_collection(Collection.from_module(lb))
    ns.add_collection(Collection.from_module(notify))
    ns.configure(DEFAULTS)
    return ns
