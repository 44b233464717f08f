"""Exceptions raised by xsbi.

Every error a user can trigger with bad input derives from :class:`XsbiError`, so scripts can
catch them in one place.  Messages say what is wrong *and* what to do about it.
"""


class XsbiError(Exception):
    """Base class of all xsbi errors caused by user input."""


class DataError(XsbiError, ValueError):
    """A spectrum, response or background file is missing, malformed or inconsistent."""


class ModelError(XsbiError, ValueError):
    """A model expression, component or parameter is unknown or invalid."""


class PriorError(XsbiError, ValueError):
    """A prior is malformed or incompatible with its parameter."""
