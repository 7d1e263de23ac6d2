"""presence: who is in a workspace, and who holds its exclusive edit lease."""

__version__ = "0.1.0"
