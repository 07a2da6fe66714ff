"""Stratus Python bootstrap: imports a function's handler once and serves invocations in a loop.

Runs inside user function processes, so it uses the standard library only. The wire protocol is
described in :mod:`stratus_bootstrap.protocol`; ``python -m stratus_bootstrap`` starts it.
"""

__all__ = ["__version__"]

__version__ = "1"
