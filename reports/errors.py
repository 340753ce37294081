"""The exception a user can cause when reading run folders back: a missing or foreign folder or file."""


class ReportError(Exception):
    """A run folder that cannot be read; the message names the file and says what to do."""
