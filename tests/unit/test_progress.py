"""A long run tells how far it has come, every few seconds, never once per key."""

from __future__ import annotations

from kvbackup.services.progress import REPORT_INTERVAL_SECONDS, Progress


class Reports:
    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    async def __call__(self, done: int, total: int) -> None:
        self.seen.append((done, total))


async def test_progress_is_reported_at_most_once_per_interval() -> None:
    reports, now = Reports(), [0.0]
    progress = Progress(100, reports, clock=lambda: now[0])

    for _ in range(100):
        now[0] += 0.25  # a key every quarter second: 25 s in all
        await progress.item_done()

    assert reports.seen == [(1, 100), (21, 100), (41, 100), (61, 100), (81, 100)]
    assert REPORT_INTERVAL_SECONDS == 5.0


async def test_the_last_key_is_left_to_the_runs_outcome() -> None:
    reports = Reports()
    progress = Progress(1, reports, clock=lambda: 100.0)

    await progress.item_done()

    assert reports.seen == []
