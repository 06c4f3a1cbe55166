"""The operator watches every namespace that matches its pattern, including one created
while it could not reach the API server: that namespace's KeyBackups run once it can.

The API server restarts meanwhile, as in an upgrade of the control plane, so that the
operator's watches cannot resume where they stopped: they start again with a listing."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from tests.harness.controlplane import ControlPlane
from tests.harness.fault_proxy import FaultProxy
from tests.harness.lowkey import Lowkey
from tests.harness.vault import Vault
from tests.integration.conftest import Cluster, OperatorBehindForwarder
from tests.integration.objects import keybackup

pytestmark = pytest.mark.integration


def test_a_namespace_created_while_the_api_server_was_out_of_reach_is_watched_once_it_is_back(
    control_plane: ControlPlane,
    lowkey: Lowkey,
    proxy: FaultProxy,
    operator_behind_forwarder: Callable[[str], OperatorBehindForwarder],
) -> None:
    team = f"tenant-{uuid.uuid4().hex[:8]}"
    early, late = Cluster(control_plane, f"{team}-early"), Cluster(control_plane, f"{team}-late")
    Vault(proxy.url, lowkey.certificate).create_ec_keys(["app-key"])
    operator = operator_behind_forwarder(f"{team}-*")
    control_plane.kubectl("create", "namespace", early.namespace)
    early.apply(keybackup("keys", proxy.url))
    early.wait_for_phase("keybackup", "keys", "Succeeded")

    operator.cut_off()  # every watch of the operator breaks; it retries, and fails
    control_plane.stop_api_server()
    control_plane.start_api_server()
    control_plane.kubectl("create", "namespace", late.namespace)
    late.apply(keybackup("keys", proxy.url))
    operator.reconnect()

    # Its watch of namespaces starts again with a listing that holds the new one.
    backed_up = late.wait_for_phase("keybackup", "keys", "Succeeded", timeout=90)
    assert backed_up["lastRun"]["keysSucceeded"] == 1
