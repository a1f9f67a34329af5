"""Entry point for ``inv``: the root collection of hatasks (see ``inv -l``)."""

from hatasks.namespace import build

ns = build()
