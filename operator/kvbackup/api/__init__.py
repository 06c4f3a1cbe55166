"""Typed models of the custom resources and the names they share with storage."""

GROUP = "kvbackup.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

KEYBACKUP_PLURAL = "keybackups"
KEYRESTORE_PLURAL = "keyrestores"

#: Changing this annotation to any new value asks for one more backup run.
BACKUP_NOW_ANNOTATION = f"{GROUP}/backup-now"
#: A new value asks for a verification now, whatever ``spec.verify`` says.
VERIFY_NOW_ANNOTATION = f"{GROUP}/verify-now"

#: Labels on every stored object, so `kubectl get secrets -l kvbackup.io/keybackup=x` works.
KEYBACKUP_LABEL = f"{GROUP}/keybackup"
SNAPSHOT_LABEL = f"{GROUP}/snapshot"
ROLE_LABEL = f"{GROUP}/role"
