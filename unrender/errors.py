"""Exceptions raised by unrender.

Every user-facing failure is one of these, carrying a single sentence that names the
argument or file at fault and says how to fix it.
"""


class UnrenderError(Exception):
    """Base class of all errors unrender raises on purpose."""


class InputError(UnrenderError, ValueError):
    """A tensor argument has the wrong shape, dtype or values."""


class DataError(UnrenderError, ValueError):
    """A file on disk is missing, unreadable or malformed."""
