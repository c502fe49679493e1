"""The one exception type for mistakes a user can fix (bad name, missing data, bad value, unreadable file).

The command line prints its message (one sentence: what is wrong and what to do) and exits with status 2.
"""


class UserError(ValueError):
    """A mistake in the user's input; the message says what and what to do."""

    exit_code = 2


class UnreadableFile(UserError):
    """A file that cannot be loaded (empty, truncated, of another kind); ``reason`` says why in a few words, for a
    list of the files a resume passed over."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


class TrainingStopped(Exception):
    """Training ended early on purpose (SIGINT / SIGTERM) after writing a checkpoint; the message says how to resume.
    ``exit_code`` is 128 + the signal number (130, 143)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code
