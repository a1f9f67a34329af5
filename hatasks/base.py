"""The task decorator every hatasks task uses.

It is ``invoke.task`` plus one rule: an expected failure (:class:`HaError`)
leaves as ``invoke.Exit`` with a one-line message on stderr and the error's
exit code, never as a traceback.
"""

import functools
import sys

import invoke

from .errors import HaError


def task(*args, **kwargs):
    """Like ``invoke.task``; turns :class:`HaError` into a clean non-zero exit."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(ctx, *a, **kw):
            try:
                return fn(ctx, *a, **kw)
            except HaError as exc:
                print(f"hatasks: error: {exc.message}", file=sys.stderr, flush=True)
                raise invoke.Exit(code=exc.code)

        return invoke.task(*args, **kwargs)(wrapper)

    if len(args) == 1 and callable(args[0]) and not kwargs:
        fn = args[0]
        args = ()
        return decorate(fn)
    return decorate
