"""The one exception of bad input data (kept apart so every data module can import it)."""


class DataError(ValueError):
    """Bad input data: the message names the file, the line or key, and what is wrong."""
