"""The one exception type for user mistakes (bad config, bad data, missing model).

The CLI prints an `AlignkitError` as a plain message and exits with status 2; anything else is a bug and
keeps its traceback. Messages say what went wrong, where (file, line, field) and how to fix it.
"""


class AlignkitError(Exception):
    """A mistake the user can fix; the message names what, where and how."""
