"""The exception a user's data can cause: a missing folder, a wrong layout, an unreadable image or mask."""


class DatasetError(Exception):
    """A data problem the user can fix; the message names the file or folder and says what to do."""
