"""TCP forwarders on loopback: each gives a Lowkey Vault instance one more vault address.

Lowkey finds a vault by the host:port a request names, and only 127.0.0.1 and localhost
resolve here, so one emulator serves many vaults when each vault has its own port. A
forwarder relays bytes unchanged (TLS passes through end to end) and counts the
connections it accepts, which is how tests see how many connections a client opens.
While held (``Forwarders.hold``), it keeps back every large chunk a client sends (the
body of a large write, such as a pack of keys) until it is released: a write then stays
on its way for as long as a test needs, while small requests (a listing) pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

_CHUNK = 65536
#: A chunk at least this large from a client is part of a large request body.
LARGE_CHUNK = 16384


@dataclass
class Forwarder:
    port: int
    target_port: int
    #: Connections accepted so far, and how many are open now.
    accepted: int = 0
    open: int = 0
    peak_open: int = 0
    #: Large chunks from clients kept back so far (see ``Forwarders.hold``).
    held: int = 0
    #: Cleared while large chunks from clients are kept back.
    _flowing: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    _server: asyncio.Server | None = field(default=None, repr=False)
    _relays: set[asyncio.Task[None]] = field(default_factory=set, repr=False)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set, repr=False)


async def _pipe(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    holder: Forwarder | None = None,
) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while chunk := await reader.read(_CHUNK):
            if holder is not None and not holder._flowing.is_set() and len(chunk) >= LARGE_CHUNK:
                holder.held += 1
                await holder._flowing.wait()
            writer.write(chunk)
            await writer.drain()
    with contextlib.suppress(ConnectionError, OSError, RuntimeError):
        writer.close()


class Forwarders:
    """Forwarders served by one background thread with its own event loop."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="tcp-forwarders", daemon=True
        )
        self._thread.start()
        self._forwarders: list[Forwarder] = []

    def _run(self, coroutine: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(timeout=30)

    def open(self, target_port: int) -> Forwarder:
        """A new loopback port whose connections reach ``target_port``."""
        return self._run(self._open(target_port))  # type: ignore[no-any-return]

    async def _open(self, target_port: int) -> Forwarder:
        forwarder = Forwarder(0, target_port)
        forwarder._flowing.set()
        await self._serve(forwarder)
        self._forwarders.append(forwarder)
        return forwarder

    async def _serve(self, forwarder: Forwarder) -> None:
        """Accepts connections on the forwarder's port (a new one while it is 0)."""

        async def relay(client_reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            forwarder._relays.add(task)
            task.add_done_callback(forwarder._relays.discard)
            forwarder._writers.add(client)
            forwarder.accepted += 1
            forwarder.open += 1
            forwarder.peak_open = max(forwarder.peak_open, forwarder.open)
            try:
                upstream_reader, upstream = await asyncio.open_connection(
                    "127.0.0.1", forwarder.target_port
                )
            except OSError:
                forwarder._writers.discard(client)
                client.close()
                forwarder.open -= 1
                return
            forwarder._writers.add(upstream)
            await asyncio.gather(
                _pipe(client_reader, upstream, forwarder), _pipe(upstream_reader, client)
            )
            forwarder._writers.difference_update((client, upstream))
            forwarder.open -= 1

        server = await asyncio.start_server(relay, "127.0.0.1", forwarder.port)
        forwarder.port = server.sockets[0].getsockname()[1]
        forwarder._server = server

    def hold(self, forwarder: Forwarder) -> None:
        """From now on, keep back every large chunk a client sends until ``release``."""
        self._loop.call_soon_threadsafe(forwarder._flowing.clear)

    def release(self, forwarder: Forwarder) -> None:
        self._loop.call_soon_threadsafe(forwarder._flowing.set)

    def close(self, forwarder: Forwarder) -> None:
        """Drops every connection and accepts no more; ``reopen`` accepts them again."""
        self._run(self._close(forwarder))

    def reopen(self, forwarder: Forwarder) -> None:
        """Accepts connections again, on the same port."""
        self._run(self._serve(forwarder))

    async def _close(self, forwarder: Forwarder) -> None:
        if forwarder._server is not None:
            forwarder._server.close()
            forwarder._server = None
        # Closing the streams ends the relays on their own; cancelling them instead makes
        # asyncio's stream callbacks log errors.
        for writer in list(forwarder._writers):
            writer.close()
        await asyncio.wait_for(
            asyncio.gather(*forwarder._relays, return_exceptions=True), timeout=10
        )

    def shutdown(self) -> None:
        for forwarder in self._forwarders:
            self.close(forwarder)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
