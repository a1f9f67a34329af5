"""The one shell-quoting helper: every value that reaches a remote command goes through ``q``.

A leaf module (no hatasks imports) so that pure modules (plans, rules) build commands with it too.
"""

import shlex


def q(value):
    """``value`` as a str, quoted as one sh word."""
    return shlex.quote(str(value))
