"""presence: who is in a workspace, and who holds its exclusive edit lease."""

from importlib.metadata import PackageNotFoundError, version

try:
    # One source for the version: pyproject.toml, as installed (static/package.json follows it,
    # and a test holds them together).
    __version__ = version("presence")
except PackageNotFoundError:  # imported from a checkout that was never installed
    __version__ = "0+unknown"
