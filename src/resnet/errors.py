"""The one exception type for mistakes a user can fix (bad name, missing data, bad value, unreadable file).

The command line prints its message (one sentence: what is wrong and what to do) and exits with status 2.
"""


class UserError(ValueError):
    """A mistake in the user's input; the message says what and what to do."""

    exit_code = 2
