"""Writes that end before their caller does.

A run is cancelled when its KeyBackup is deleted, and a ``Delete``-policy KeyBackup's
snapshots are deleted right after. A write already on its way (a Kubernetes call runs on
in its thread whatever its caller does; a blob upload whose request is sent is stored)
would land after the clean-up listed what to delete, and stay an orphan. So a cancelled
caller waits for the write it started before its cancellation goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

_T = TypeVar("_T")


async def to_completion(work: Awaitable[_T]) -> _T:
    """``work``'s result; if the caller is cancelled meanwhile, ``work`` still ends first."""
    future = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait({future})
        raise
