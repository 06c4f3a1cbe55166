"""The project's error taxonomy.

Every adapter maps its SDK's exceptions to one of these classes; whether, when and how
many times a failure is tried again is decided in one place
(``kvbackup.services.retry_policy``), for runs, deletions and single calls alike, and the
handlers and adapters act on its verdict. ``reason`` is a CamelCase word that ends up in
status conditions and Events, so users can match on it. Text from outside the operator
enters a message only through ``foreign_text``, which bounds it.
"""

from __future__ import annotations


class KvBackupError(Exception):
    """Base class: something the operator could not do, with a reason for users."""

    reason = "Error"
    #: Whether retrying the same operation later may succeed without a change of spec.
    temporary = False

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason


class InvalidSpecError(KvBackupError):
    """The object asks for something impossible that the CRD schema could not refuse."""

    reason = "InvalidSpec"


class NotPermittedError(KvBackupError):
    """The cluster admin's policy does not let this namespace do what the object asks."""

    reason = "NotPermitted"


class HostNotAllowedError(NotPermittedError):
    """A vault or storage URL names a host outside the operator's allow-lists
    (KVBACKUP_VAULT_HOSTS, KVBACKUP_BLOB_HOSTS). Raised before the host is resolved or
    connected to, so an object cannot aim the operator's requests at other services."""

    reason = "HostNotAllowed"


class NotFoundError(KvBackupError):
    """A key, snapshot, Secret or object that was named does not exist."""

    reason = "NotFound"


class ConflictError(KvBackupError):
    """The target already holds what would be written (an active key of that name)."""

    reason = "Conflict"


class DeletionRefusedError(KvBackupError):
    """Storage refused to delete what retention removes: an immutability policy or legal
    hold (WORM), or an identity that may write but not delete. What it keeps is kept, and
    the next retention asks again."""

    reason = "DeletionRefused"


class IntegrityError(KvBackupError):
    """Stored backup bytes do not match the sha256 recorded in the snapshot manifest."""

    reason = "IntegrityCheckFailed"


class TooLargeError(KvBackupError):
    """A payload exceeds what the destination can hold."""

    reason = "TooLarge"


class TooManyVersionsError(KvBackupError):
    """An item has more versions than Key Vault backs up: its backup call would be refused,
    so it is not made."""

    reason = "TooManyVersions"


class AccessDeniedError(KvBackupError):
    """Authentication failed or the identity lacks a permission (401/403).

    Temporary: role assignments and federated credentials take minutes to
    propagate in Azure, so the operator keeps retrying with backoff.
    """

    reason = "AccessDenied"
    temporary = True


class CredentialUnavailableError(KvBackupError):
    """No Azure identity could be had at all: none is configured where the operator runs
    (workload identity, managed identity, environment), or its token endpoint does not
    answer. No service was asked, so nothing was denied.

    Temporary: a managed identity's endpoint may come back, and the operator must not give
    up on an object for good; the object can also name a credentials Secret instead.
    """

    reason = "CredentialUnavailable"
    temporary = True


class ItemAccessDeniedError(AccessDeniedError):
    """The vault refused one item to an identity it otherwise serves (403 on a call about
    that key, secret or certificate: a role assignment scoped to one kind or one item).

    Permanent for that item in the run, which goes on with the others. Only when every item
    of a run is refused is the vault taken to deny the identity as a whole, and the run
    fails with ``AccessDeniedError`` (see ``kvbackup.services.workers``).
    """

    temporary = False


class ThrottledError(KvBackupError):
    """The service answered 429 beyond what the SDK's own retries absorbed."""

    reason = "Throttled"
    temporary = True

    def __init__(
        self, message: str, *, retry_after: float | None = None, reason: str | None = None
    ) -> None:
        super().__init__(message, reason=reason)
        self.retry_after = retry_after


class TransientError(KvBackupError):
    """A network failure, a timeout or a 5xx answer."""

    reason = "Unavailable"
    temporary = True


class MissingReferenceError(KvBackupError):
    """A referenced object (a snapshot to restore, a credentials Secret) does not exist yet.

    Temporary: GitOps tools apply objects in any order and a backup may still be
    running, so the operator retries until the reference appears.
    """

    reason = "MissingReference"
    temporary = True


class UnexpectedError(KvBackupError):
    """An exception outside this taxonomy: a bug, or an exhausted resource (file handles,
    memory). Temporary, so a long-lived object is not abandoned for good."""

    reason = "InternalError"
    temporary = True

    @classmethod
    def wrapping(cls, error: BaseException) -> UnexpectedError:
        return cls(f"unexpected error: {foreign_text(f'{type(error).__name__}: {error}')}")


#: Longest text kept from a message the operator did not write (a remote service's
#: explanation, a foreign exception): status and Events are read by people, and a
#: service must not be able to fill them.
FOREIGN_TEXT_LIMIT = 300


def foreign_text(text: str) -> str:
    """Someone else's message, on one line and at most ``FOREIGN_TEXT_LIMIT`` characters."""
    return " ".join(text.split())[:FOREIGN_TEXT_LIMIT]
