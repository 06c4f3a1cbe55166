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


async def _other_arguments(*, event: bodies.RawEvent, **_: Any) -> None:
    """What a kopf release that renamed the replaced function's arguments would call."""


def _needs_another_argument(
    *, raw_events: Any, namespaces: Any, insights: Any, generation: int
) -> None:
    """A kopf release whose revise_namespaces needs one argument more."""


@pytest.mark.parametrize(
    ("name", "replacement"),
    [
        pytest.param("process_discovered_namespace_event", None, id="replaced-gone"),
        pytest.param("process_discovered_namespace_event", _other_arguments, id="replaced-renamed"),
        pytest.param("revise_namespaces", None, id="called-gone"),
        pytest.param("revise_namespaces", _needs_another_argument, id="called-needs-more"),
    ],
)
def test_a_kopf_that_no_longer_fits_the_patch_is_refused_at_start_up_naming_the_function(
    monkeypatch: pytest.MonkeyPatch, name: str, replacement: Any
) -> None:
    if replacement is None:
        monkeypatch.delattr(observation, name)
    else:
        monkeypatch.setattr(observation, name, replacement)
    kopfs_own = observation.__dict__.get("process_discovered_namespace_event")

    with pytest.raises(SystemExit, match=f"kopf._core.reactor.observation.{name} is gone"):
        watch_namespaces_listed_on_reconnect()
    assert observation.__dict__.get("process_discovered_namespace_event") is kopfs_own
