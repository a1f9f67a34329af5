"""The root collection: one sub-collection per tool, configured once here."""

from invoke import Collection

from .config import DEFAULTS


def build():
    """Return the root collection used by both ``tasks.py`` and ``fabfile.py``."""
    ns = Collection()
    # sub-collections are added here, one line each
    ns.configure(DEFAULTS)
    return ns
