"""User-facing errors: the CLI prints their message (no traceback) and exits with code 2."""


class AlignError(Exception):
    """An error the user can fix (bad flag, bad data, missing file).

    The message must say what is wrong and what to do about it.
    """

    exit_code = 2
