"""kopf's namespace watch takes in what its listings find: a namespace created while the
watch started or reconnected is watched like any other."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kopf._cogs.structs import bodies, references
from kopf._core.reactor import observation

from kvbackup.handlers.namespaces import watch_namespaces_listed_on_reconnect

PATTERNS: list[references.NamespacePattern] = ["team-*"]


@pytest.fixture
def kopf_as_the_operator_runs_it() -> Iterator[None]:
    kopfs_own = observation.process_discovered_namespace_event
    watch_namespaces_listed_on_reconnect()
    yield
    observation.process_discovered_namespace_event = kopfs_own


def _event(kind: str | None, name: str, **metadata: Any) -> bodies.RawEvent:
    return bodies.RawEvent(type=kind, object={"metadata": {"name": name, **metadata}})  # type: ignore[typeddict-item]


async def _process(insights: references.Insights, event: bodies.RawEvent) -> None:
    # Looked up as kopf's namespace observer does, when its watch starts.
    await observation.process_discovered_namespace_event(
        raw_event=event, namespaces=PATTERNS, insights=insights
    )


@pytest.mark.usefixtures("kopf_as_the_operator_runs_it")
async def test_a_matching_namespace_found_by_the_watchs_listing_is_watched() -> None:
    insights = references.Insights()
    await _process(insights, _event(None, "team-late"))
    await _process(insights, _event(None, "other-late"))
    assert insights.namespaces == {"team-late"}


@pytest.mark.usefixtures("kopf_as_the_operator_runs_it")
async def test_watch_events_still_add_and_remove_namespaces() -> None:
    insights = references.Insights()
    await _process(insights, _event("ADDED", "team-a"))
    await _process(insights, _event("ADDED", "team-b"))
    await _process(insights, _event("DELETED", "team-a"))
    assert insights.namespaces == {"team-b"}


async def test_kopf_alone_ignores_the_listing_which_is_why_the_operator_changes_it() -> None:
    # Fails once a kopf release takes listings in by itself: then this module can go.
    insights = references.Insights()
    await _process(insights, _event(None, "team-late"))
    assert insights.namespaces == set()
