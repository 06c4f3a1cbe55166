"""The metrics endpoint listens on the address it is given, and on no other."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable

import pytest

from tests.integration.conftest import Cluster

pytestmark = pytest.mark.integration


def _answers(address: str, port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{address}:{port}/metrics", timeout=5) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def test_metrics_bound_to_one_address_are_not_served_on_another(
    own_operator: Callable[..., Cluster],
) -> None:
    # Every 127.x.y.z address reaches this host: 127.0.0.2 stands for the pod's loopback,
    # 127.0.0.1 for any other address the pod has.
    cluster = own_operator("metrics-address", KVBACKUP_METRICS_ADDRESS="127.0.0.2")
    assert cluster.operator is not None
    port = cluster.operator.metrics_port

    assert _answers("127.0.0.2", port)
    assert not _answers("127.0.0.1", port)
