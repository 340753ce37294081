"""The one exception type a user can cause."""


class PatchbenchError(Exception):
    """A problem the user can fix: bad folder, bad file, unknown name, missing weights.

    The message names the file or the name and says what to do. The CLI prints it
    without a traceback and exits non-zero.
    """
