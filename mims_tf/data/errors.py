"""The one error type of the data package (`DataError`: the file and the cause in one line), `describe`,
which turns a library's exception into the one-line cause such an error gives, and `rows_text`."""


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

    def __reduce__(self):  # pickled with its two arguments: it crosses process boundaries (a bench's worker)
        return type(self), (self.path, self.reason)


def describe(error):
    """`"<Type>: <first line of the message>"` (or the type alone): a library's exception as one line."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def rows_text(lines):
    """`row 3` / `rows 3, 5` (at most 10 listed)."""
    lines = list(lines)
    if len(lines) == 1:
        return f"row {lines[0]}"
    shown = ", ".join(str(n) for n in lines[:10])
    return f"rows {shown}" + (f" and {len(lines) - 10} more" if len(lines) > 10 else "")
