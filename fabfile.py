"""Entry point for ``fab``: the same collections as ``inv`` (``fab -l``)."""

from hatasks.namespace import build

ns = build()
