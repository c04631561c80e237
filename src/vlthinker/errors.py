"""Error types that the CLI turns into a clear message and a non-zero exit, never a traceback."""


class VLThinkerError(Exception):
    """Base of every error vlthinker raises on purpose; its message is meant for the user."""


class ConfigError(VLThinkerError):
    """A config file is missing, unreadable, or holds an unknown key or a bad value."""


class DatasetError(VLThinkerError):
    """A dataset directory or one of its records breaks the data contract."""


class SourceUnavailableError(VLThinkerError):
    """A public dataset could not be loaded (no hub, no local copy)."""
