"""kopf glue: importing this package registers every handler."""

from kvbackup.handlers import keybackup, keyrestore, lifecycle

__all__ = ["keybackup", "keyrestore", "lifecycle"]
