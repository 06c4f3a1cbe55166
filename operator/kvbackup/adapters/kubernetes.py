"""The Kubernetes API through the official client, off the event loop."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from typing import Any, TypeVar, cast

import kubernetes
import urllib3

# Imported by name, not reached as kubernetes.client.CoreV1Api when the operator connects:
# the client loads its API classes (and the models they return) lazily, and an import
# here loads them with the rest of the operator at start, from the image's bytecode.
from kubernetes.client import ApiClient, CoordinationV1Api, CoreV1Api, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from kvbackup import errors
from kvbackup.adapters.completion import to_completion
from kvbackup.api import GROUP, VERSION

_T = TypeVar("_T")


def connect() -> ApiClient:
    """In-cluster configuration when running in a pod, the kubeconfig otherwise."""
    try:
        kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]
    return ApiClient()


def connect_to(kubeconfig: str | None, context: str | None) -> kubernetes.client.ApiClient:
    """A cluster from a kubeconfig file (None: $KUBECONFIG or ~/.kube/config) and one of
    its contexts (None: the current one), as kubectl finds it."""
    try:
        return kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call,no-any-return]
            config_file=kubeconfig, context=context
        )
    except (kubernetes.config.ConfigException, OSError) as error:
        raise errors.InvalidSpecError(f"no usable kubeconfig: {error}") from None


def context_namespace(kubeconfig: str | None, context: str | None) -> str | None:
    """The namespace a kubeconfig's context names (None: the current one), or "default"
    when it names none, as kubectl chooses one without ``-n``; None without a kubeconfig
    or that context."""
    try:
        contexts, current = kubernetes.config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=kubeconfig
        )
    except (kubernetes.config.ConfigException, OSError):
        return None
    named = [c for c in contexts if isinstance(c, dict) and c.get("name") == context]
    chosen = current if context is None else next(iter(named), None)
    details = chosen.get("context") if isinstance(chosen, dict) else None
    if not isinstance(details, dict):
        return None
    namespace = details.get("namespace")
    return namespace if isinstance(namespace, str) and namespace else "default"


def _server_message(error: ApiException) -> str:
    """The API server's own explanation (a Status object's message), e.g. why it refused
    a Secret; it names fields and limits, never the data."""
    try:
        document = json.loads(error.body or "")
    except (TypeError, ValueError):
        return ""
    text = document.get("message") if isinstance(document, dict) else None
    return errors.foreign_text(str(text)) if text else ""


def map_api_error(error: ApiException, what: str) -> errors.KvBackupError:
    status = error.status or 0
    message = f"{what}: HTTP {status} {error.reason or ''}".rstrip()
    explanation = _server_message(error)
    if explanation:
        message = f"{message}: {explanation}"
    if status == 422 and "Too long" in explanation:
        return errors.TooLargeError(message)
    if status == 404:
        return errors.NotFoundError(message)
    if status == 409:
        return errors.ConflictError(message)
    if status in (401, 403):
        return errors.AccessDeniedError(message)
    if status == 413:
        return errors.TooLargeError(message)
    if status == 422:
        return errors.InvalidSpecError(message)
    if status == 429 or status >= 500:
        return errors.TransientError(message, reason="KubernetesUnavailable")
    return errors.KvBackupError(message, reason="KubernetesRejected")


@contextmanager
def kubernetes_errors(what: str) -> Iterator[None]:
    try:
        yield
    except ApiException as error:
        raise map_api_error(error, what) from None
    except (
        OSError,
        json.JSONDecodeError,
        urllib3.exceptions.HTTPError,
        kubernetes.client.exceptions.OpenApiException,
    ) as error:
        raise errors.TransientError(
            f"{what}: {type(error).__name__}", reason="KubernetesUnavailable"
        ) from None


#: Asks the API server for metadata only (kubectl get -o name does the same).
METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"

#: Threads for the blocking Kubernetes client: its own pool, so a slow or frozen API
#: server can never take the threads that Key Vault traffic (aiohttp's DNS lookups,
#: the default executor) needs.
KUBERNETES_THREADS = 4


class KubernetesApi:
    """The few calls the operator makes besides kopf's own: Secrets, status and its Lease."""

    def __init__(self, client: ApiClient) -> None:
        self._client = client
        self._threads = ThreadPoolExecutor(KUBERNETES_THREADS, thread_name_prefix="kubernetes")
        self.core = CoreV1Api(client)
        self.custom = CustomObjectsApi(client)
        self.coordination = CoordinationV1Api(client)

    async def call(self, what: str, function: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        loop = asyncio.get_running_loop()
        with kubernetes_errors(what):
            return await to_completion(
                loop.run_in_executor(self._threads, partial(function, *args, **kwargs))
            )

    async def list_secrets(
        self, what: str, namespace: str, label_selector: str, *, page_size: int | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Secrets as plain JSON objects, ``page_size`` at a time: a page of large Secrets
        is never turned into client models, and a long list is never held at once."""
        async for item in self._secret_pages(what, namespace, label_selector, page_size):
            yield item

    async def list_secret_metadata(
        self, what: str, namespace: str, label_selector: str, *, page_size: int = 500
    ) -> AsyncIterator[dict[str, Any]]:
        """The metadata of matching Secrets, without their data, ``page_size`` at a time."""
        async for item in self._secret_pages(
            what, namespace, label_selector, page_size, {"Accept": METADATA_ONLY}
        ):
            yield item.get("metadata") or {}

    async def _secret_pages(
        self,
        what: str,
        namespace: str,
        label_selector: str,
        page_size: int | None,
        headers: dict[str, str] | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        token: str | None = None
        while True:
            page = await self.raw_json(
                what,
                self.core.list_namespaced_secret,
                namespace,
                label_selector=label_selector,
                limit=page_size,
                _continue=token,
                **({"_headers": headers} if headers else {}),
            )
            for item in page.get("items") or []:
                yield item
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return

    async def read_secret(self, what: str, namespace: str, name: str) -> dict[str, Any]:
        """One Secret as a plain JSON object."""
        return await self.raw_json(what, self.core.read_namespaced_secret, name, namespace)

    async def raw_json(
        self, what: str, function: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> dict[str, Any]:
        response = await self.call(what, function, *args, _preload_content=False, **kwargs)
        with kubernetes_errors(what):
            document = json.loads(response.data)
        if not isinstance(document, dict):
            raise errors.TransientError(
                f"{what}: the API server answered with no object", reason="KubernetesUnavailable"
            )
        return document

    async def read_secret_data(
        self, namespace: str, name: str, *, label: str
    ) -> dict[str, bytes] | None:
        """One Secret's data, decoded, when the Secret carries the label ``label: "true"``;
        None when it does not: its data is then not even decoded."""
        secret = await self.read_secret(f"read Secret {namespace}/{name}", namespace, name)
        labels = (secret.get("metadata") or {}).get("labels") or {}
        if not isinstance(labels, dict) or labels.get(label) != "true":
            return None
        return decode_data(secret.get("data") or {})

    async def patch_status(
        self, plural: str, namespace: str, name: str, status: Mapping[str, Any]
    ) -> None:
        await self.call(
            f"update status of {plural}/{name}",
            self.custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            namespace,
            plural,
            name,
            {"status": dict(status)},
        )

    async def read_custom_object(
        self, plural: str, namespace: str, name: str
    ) -> dict[str, Any] | None:
        """One of the project's objects, or None when it does not exist."""
        try:
            found = await self.call(
                f"read {plural}/{name}",
                self.custom.get_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                plural,
                name,
            )
        except errors.NotFoundError:
            return None
        return cast(dict[str, Any], found)

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        self._client.close()  # type: ignore[no-untyped-call]


def decode_data(data: Mapping[str, str | bytes]) -> dict[str, bytes]:
    return {key: base64.b64decode(value) for key, value in data.items()}
