"""A Slack assistant bot backed by OpenAI."""

__version__ = "0.2.0"
"""The release (semantic versioning). pyproject.toml reads it from here, so it is bumped in one
place, with a section of the same name in CHANGELOG.md; `python -m bot --version` prints it."""
