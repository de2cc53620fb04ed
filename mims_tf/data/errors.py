"""The one error type of the data package (`DataError`: the file and the cause in one line), and `describe`,
which turns a library's exception into the one-line cause such an error gives."""


class DataError(ValueError):
    """Bad input data. `str(error)` is `"<path>: <reason>"`.

    Attributes:
        path: the file (or manifest) at fault.
        reason: what is wrong with it.
    """

    def __init__(self, path, reason):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def describe(error):
    """`"<Type>: <first line of the message>"` (or the type alone): a library's exception as one line."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
