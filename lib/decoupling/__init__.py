"""The Great Decoupling, a reproducible essay: the library every chapter calls.

See lib/decoupling/README.md for the module map. Importing the package is cheap: torch and friends are
imported by the modules that need them, so `decoupling --help` answers instantly.
"""
__version__ = "0.1.0"
