"""The Great Decoupling, a reproducible essay: the library every chapter calls.

See lib/decoupling/README.md for the module map. Importing the package is cheap: torch and friends are
imported by the modules that need them, so `decoupling --help` answers instantly.
"""
import sys as _sys

__version__ = "0.1.0"

if "ipykernel" in _sys.modules:
    # In a chapter's kernel, before any library it imports can print tqdm's widget notice on the page.
    from decoupling import progress as _progress  # noqa: F401
