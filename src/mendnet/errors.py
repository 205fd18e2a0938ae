"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class MendnetError(Exception):
    """A user-facing problem with input, settings or files (message is one line)."""
