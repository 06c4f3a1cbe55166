"""Every namespace that matches ``KVBACKUP_WATCH_NAMESPACES`` is watched, however it came.

kopf (1.45) learns the namespaces from a listing at start-up, then from a watch. The
watch begins with a listing of its own, and again after each reconnect (the API server
restarted, a connection dropped), and kopf ignores what those listings hold. A namespace
created after the start-up listing and before the watch's, or while the watch was
reconnecting, was then never watched until the operator restarted: its KeyBackups would
never run, and nothing would say so. Here kopf takes those listings in too; a namespace
it knows already is simply known again.

This replaces a function inside kopf's private packages, so kopf is pinned to the minor
release it was written and tested against (pyproject.toml), and start-up refuses a kopf
whose functions are gone or take other arguments. Drop this module, the check and the pin
once a kopf release takes the listings in by itself:
tests/unit/test_namespace_listings.py says when (its kopf-alone test then fails).
"""

from __future__ import annotations

import importlib.metadata
import inspect
from collections.abc import Callable, Collection
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


#: The function replaced, and the arguments kopf's namespace observer passes it by name.
REPLACED = ("process_discovered_namespace_event", {"raw_event", "namespaces", "insights"})
#: The function the replacement calls, and the arguments it passes.
CALLED = ("revise_namespaces", {"raw_events", "namespaces", "insights"})


def _fits(function: Callable[..., Any], arguments: set[str]) -> bool:
    """Whether ``function`` takes ``arguments`` by name and needs no other."""
    parameters = inspect.signature(function).parameters.values()
    named = {p.name for p in parameters if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    needed = {p.name for p in parameters if p.default is p.empty and p.kind != p.VAR_KEYWORD}
    return arguments <= named and needed <= arguments


def check_kopf_fits() -> None:
    """Refuses to start when kopf's replaced function, or the one the replacement calls,
    is gone or takes other arguments: the operator would otherwise fail inside kopf's
    namespace watch, or silently stop watching new namespaces."""
    for name, arguments in (REPLACED, CALLED):
        function = getattr(observation, name, None)
        if not callable(function) or not _fits(function, arguments):
            raise SystemExit(
                f"kopf {importlib.metadata.version('kopf')} does not fit this operator: "
                f"kopf._core.reactor.observation.{name} is gone or no longer takes "
                f"{', '.join(sorted(arguments))}; install the kopf version pyproject.toml pins"
            )


def watch_namespaces_listed_on_reconnect() -> None:
    """Makes kopf's namespace watch take in the namespaces its listings find."""
    check_kopf_fits()
    # kopf looks the processor up when its namespace observer starts, so this must come
    # before kopf.run.
    observation.process_discovered_namespace_event = _take_in_namespace_event
