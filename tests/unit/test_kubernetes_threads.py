"""Kubernetes calls block threads (the official client is synchronous); they get threads
of their own, so a slow API server cannot starve the rest of the operator."""

from __future__ import annotations

import asyncio
import threading

import kubernetes

from kvbackup.adapters.kubernetes import KUBERNETES_THREADS, KubernetesApi


async def test_a_frozen_api_server_leaves_the_default_threads_free() -> None:
    api = KubernetesApi(kubernetes.client.ApiClient())
    frozen = threading.Event()
    try:
        stuck = [
            asyncio.create_task(api.call("read a Secret", frozen.wait))
            for _ in range(KUBERNETES_THREADS * 2)
        ]
        await asyncio.sleep(0.05)

        # What aiohttp's resolver and everything else use: still answering at once.
        answered = await asyncio.wait_for(asyncio.to_thread(threading.current_thread), timeout=1)

        assert not answered.name.startswith("kubernetes")
        assert not any(task.done() for task in stuck)
    finally:
        frozen.set()
        await asyncio.gather(*stuck)
        api.close()


async def test_kubernetes_calls_run_on_the_kubernetes_threads() -> None:
    api = KubernetesApi(kubernetes.client.ApiClient())
    try:
        thread = await api.call("who runs this", threading.current_thread)
    finally:
        api.close()

    assert thread.name.startswith("kubernetes")
