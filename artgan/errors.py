"""One exception type for problems the user can fix (bad files, bad specs).

The CLI prints these as a one-line message and exits non-zero, without a traceback;
anything else is a bug and keeps its traceback.
"""


class ArtganError(Exception):
    """A user-facing error: the message names the file (and line) and what was expected."""
