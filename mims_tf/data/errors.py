"""The one error type of the data package: names the file and the cause in one line."""


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
