"""One exception type for problems the user can fix (bad files, bad specs, bad arguments).

The CLI prints these as a one-line message and exits non-zero, without a traceback;
anything else is a bug and keeps its traceback.

The library never names a command-line flag. A message names the parameter at fault as the
Python API spells it, in backticks (`` `tuner_id` 'x': use letters... ``); a front end shows
its own spelling instead (`ArtganError.render`: the CLI turns `` `tuner_id` `` into ``--id``).
"""

import re

PARAMETER = re.compile(r"`([A-Za-z_][A-Za-z0-9_.]*)`")


class ArtganError(Exception):
    """A user-facing error: the message names the file (and line) and what was expected."""

    def render(self, spellings=None):
        """The message with each `parameter` replaced by its spelling in `spellings` (a dict;
        unknown names keep their backticks)."""
        spellings = spellings or {}
        return PARAMETER.sub(lambda m: spellings.get(m[1], m[0]), str(self))


class DiskFull(ArtganError):
    """A full file system: nothing is wrong with the input or the trial, so work stops at
    once (a search spends no trial on it) and a rerun, after space is freed, resumes."""
