"""DataError, the one exception of bad input data, and PathLike, the path type of data arguments.

Every data module raises DataError with a message naming the offending file (and the line, for list
files), so a bad dataset fails fast saying where to look; callers catch this one type. Kept apart
so that each data module can import it without importing the others.
"""
import os
from typing import Union

PathLike = Union[str, os.PathLike]


class DataError(ValueError):
  """Bad input data: the message names the offending file (and line, for list files)."""
