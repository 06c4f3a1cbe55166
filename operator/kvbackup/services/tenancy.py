"""Whether a namespace may use the operator's own Azure identity for a vault or container,
and whose snapshots it may restore with it.

The operator's identity can reach vaults that a namespace's tenants cannot; without this
rule, any namespace allowed to create a KeyBackup could read or write any such vault.
Objects that bring their own credentials are not subject to it. No rule allows nothing.

In a container that several namespaces may use, the operator writes each namespace's
snapshots under a folder of its own, ``[<prefix>/]<namespace>/<keybackup>/<snapshot-id>``.
With the operator's identity a namespace restores only from its own folders, unless a rule
names the other namespace in ``restoreFromNamespaces``: a snapshot lists key names and
versions, and its backups restore another tenant's keys into any vault the namespace may
use.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from kvbackup.api.fields import NAMESPACE_NAME, OBJECT_NAME, SNAPSHOT_ID, BlobContainer
from kvbackup.api.keyrestore import BlobSnapshotSource
from kvbackup.api.tenancy import IdentityRule, rule_allowing
from kvbackup.errors import NotPermittedError, foreign_text


def vault_allowed(rules: Sequence[IdentityRule], namespace: str, vault_url: str) -> bool:
    return any(rule.allows(namespace, vault_url, rule.vault_urls) for rule in rules)


def _container_url(account_url: str, container: str) -> str:
    return f"{account_url.rstrip('/')}/{container}"


def blob_allowed(
    rules: Sequence[IdentityRule], namespace: str, account_url: str, container: str
) -> bool:
    url = _container_url(account_url, container)
    return any(rule.allows(namespace, url, rule.blob_urls) for rule in rules)


def _refusal(
    namespace: str, target: str, rule: str, reason: str = "IdentityNotAllowed"
) -> NotPermittedError:
    return NotPermittedError(
        f"namespace {namespace} may not use the operator's identity for {target}; give the "
        "object a credentials Secret, or have a cluster admin add the rule "
        f"{rule} to KVBACKUP_DEFAULT_IDENTITY_RULES (chart value defaultIdentity.rules)",
        reason=reason,
    )


def require_vault_allowed(rules: Sequence[IdentityRule], namespace: str, vault_url: str) -> None:
    if not vault_allowed(rules, namespace, vault_url):
        raise _refusal(namespace, vault_url, rule_allowing(namespace, vault_url=vault_url))


def require_blob_allowed(
    rules: Sequence[IdentityRule], namespace: str, account_url: str, container: str
) -> None:
    if not blob_allowed(rules, namespace, account_url, container):
        url = _container_url(account_url, container)
        raise _refusal(namespace, f"blob container {url}", rule_allowing(namespace, blob_url=url))


def _is_namespace(text: str) -> bool:
    return len(text) <= 63 and NAMESPACE_NAME.fullmatch(text) is not None


def folder_namespace(source: BlobSnapshotSource) -> str | None:
    """The namespace whose snapshot folder ``source.path`` names, when it is a folder the
    operator writes (``[<prefix>/]<namespace>/<keybackup>/<snapshot-id>``) in the source's
    container; None otherwise."""
    folder = source.path
    if source.url is not None:
        container_path = urlsplit(_source_container_url(source.container)).path
        url_path = urlsplit(source.url).path
        if not url_path.startswith(f"{container_path}/"):
            return None
        folder = url_path[len(container_path) + 1 :]
    segments = folder.strip("/").split("/")
    if len(segments) < 3:
        return None
    namespace, keybackup, snapshot_id = segments[-3:]
    if (
        _is_namespace(namespace)
        and OBJECT_NAME.fullmatch(keybackup)
        and SNAPSHOT_ID.fullmatch(snapshot_id)
    ):
        return namespace
    return None


def _source_container_url(container: BlobContainer) -> str:
    return _container_url(container.account_url, container.name)


def _restore_allowed(
    rules: Sequence[IdentityRule], namespace: str, container: BlobContainer, source: str
) -> bool:
    url = _source_container_url(container)
    return source == namespace or any(
        rule.allows_restore_from(namespace, url, source) for rule in rules
    )


def require_restore_source_allowed(
    rules: Sequence[IdentityRule], namespace: str, source: BlobSnapshotSource
) -> None:
    """Checks a blob source read with the operator's identity, before anything is read:
    the container is one the namespace may use, and the path is the namespace's own
    snapshot folder there, or one whose namespace a rule lets it restore from."""
    container = source.container
    require_blob_allowed(rules, namespace, container.account_url, container.name)
    source_namespace = folder_namespace(source)
    if source_namespace is None:
        raise NotPermittedError(
            f"with the operator's identity, namespace {namespace} restores only from the "
            "snapshot folders the operator writes, [<prefix>/]<namespace>/<keybackup>/"
            f"<snapshot-id>, and {source.path} is not one in container "
            f"{_source_container_url(container)}; a source with a credentials Secret of its "
            "own may name any folder",
            reason="SourceNotPermitted",
        )
    if not _restore_allowed(rules, namespace, container, source_namespace):
        rule = rule_allowing(
            namespace,
            blob_url=_source_container_url(container),
            restore_from=source_namespace,
        )
        raise _refusal(
            namespace,
            f"namespace {source_namespace}'s snapshot at {source.path}",
            rule,
            reason="SourceNotPermitted",
        )


def require_manifest_namespace_allowed(
    rules: Sequence[IdentityRule], namespace: str, container: BlobContainer, recorded: str
) -> None:
    """Checks, after the manifest is read with the operator's identity, the namespace it
    says it was backed up in: whoever could write into the container could have put it in
    a folder the namespace may read. No rule is quoted: such a manifest was forged or moved."""
    if _is_namespace(recorded) and _restore_allowed(rules, namespace, container, recorded):
        return
    raise NotPermittedError(
        f"the snapshot's manifest says it was backed up in namespace {foreign_text(recorded)}, "
        f"whose snapshots namespace {namespace} may not restore with the operator's identity",
        reason="SourceNotPermitted",
    )
