"""User-facing errors.

Anything the user can fix (a bad option, a missing file, a malformed yaml or label) is raised as
`UserError` with a message that names the thing and says what to do. The CLI prints the message
without a traceback and exits with status 2; everything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """An error the user can fix; its message is shown as is."""
