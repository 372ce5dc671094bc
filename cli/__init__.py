"""The ``dormouse`` command: the single entry point, on top of every package."""
