"""The package version, in a module of its own: setuptools reads it from here
without importing torch, and every module can import it without a cycle."""

__version__ = "0.1.0"
