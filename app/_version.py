"""The version of Trad (one place: the package, the API document and the CLI read it)."""
__version__ = "0.1.0"
