"""Every namespace that matches ``KVBACKUP_WATCH_NAMESPACES`` is watched, however it came.

kopf (1.45) learns the namespaces from a listing at start-up, then from a watch. The
watch begins with a listing of its own, and again after each reconnect (the API server
restarted, a connection dropped), and kopf ignores what those listings hold. A namespace
created after the start-up listing and before the watch's, or while the watch was
reconnecting, was then never watched until the operator restarted: its KeyBackups would
never run, and nothing would say so. Here kopf takes those listings in too; a namespace
it knows already is simply known again.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from kopf._cogs.structs import bodies, references
from kopf._core.reactor import observation


async def _take_in_namespace_event(
    *,
    raw_event: bodies.RawEvent,
    namespaces: Collection[references.NamespacePattern],
    insights: references.Insights,
    **_: Any,
) -> None:
    async with insights.revised:
        observation.revise_namespaces(
            raw_events=[raw_event], insights=insights, namespaces=namespaces
        )
        insights.revised.notify_all()


def watch_namespaces_listed_on_reconnect() -> None:
    """Makes kopf's namespace watch take in the namespaces its listings find."""
    # kopf looks the processor up when its namespace observer starts, so this must come
    # before kopf.run.
    observation.process_discovered_namespace_event = _take_in_namespace_event
