"""Reading the operator's /metrics as Prometheus would: every sample with its labels."""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Samples:
    """One scrape: (sample name, its labels) -> value."""

    values: dict[tuple[str, frozenset[tuple[str, str]]], float]

    def get(self, metric: str, /, **labels: str) -> float | None:
        """The value of the one sample with exactly these labels, or None."""
        return self.values.get((metric, frozenset(labels.items())))

    def total(self, metric: str, /, **labels: str) -> float:
        """The sum of every sample of ``metric`` whose labels include ``labels``."""
        wanted = set(labels.items())
        return sum(
            value
            for (sample, sample_labels), value in self.values.items()
            if sample == metric and wanted <= sample_labels
        )

    def label_values(self, metric: str, label: str) -> set[str]:
        return {
            value
            for sample, sample_labels in self.values
            if sample == metric
            for key, value in sample_labels
            if key == label
        }


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return Samples(
        {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }
    )
