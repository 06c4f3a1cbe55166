"""kopf glue: importing this package registers every handler."""

from kvbackup.handlers import deletion, keybackup, keyrestore, lifecycle

__all__ = ["deletion", "keybackup", "keyrestore", "lifecycle"]
