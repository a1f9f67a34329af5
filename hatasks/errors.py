"""The one exception type for expected failures, and how it leaves a task.

Every expected failure (bad input, wrong cluster state, a host that does not
answer, a step that did not converge) raises :class:`HaError`. Tasks are
wrapped by :func:`hatasks.base.task`, which turns it into ``invoke.Exit`` with
a one-line message and the error's exit code: no traceback for the operator.
"""


class HaError(Exception):
    """An expected failure: ``message`` is shown as one line, ``code`` is the exit code."""

    #: exit codes, so cron and scripts can tell failures apart
    USAGE = 2        # bad input: unknown host, bad port, shell metacharacters
    STATE = 3        # the cluster is not in the state the step needs
    UNREACHABLE = 4  # a host did not answer
    LOCKED = 5       # another operation holds the lock
    NOT_CONVERGED = 6  # the action ran but its effect was not verified in time
    REFUSED = 7      # the operator did not confirm, or no terminal and no --yes

    def __init__(self, message, code=1):
        super().__init__(message)
        self.message = message
        self.code = code

    def __str__(self):
        return self.message


class UsageError(HaError):
    def __init__(self, message):
        super().__init__(message, HaError.USAGE)


class StateError(HaError):
    def __init__(self, message):
        super().__init__(message, HaError.STATE)


class UnreachableError(HaError):
    def __init__(self, message):
        super().__init__(message, HaError.UNREACHABLE)
