"""Entry point: ``python -m kvbackup`` (or ``kvbackup-operator``) runs the operator."""

from __future__ import annotations

import asyncio

import kopf
import uvloop

from kvbackup.adapters.metrics import OperatorMetrics
from kvbackup.config import Settings


def main() -> None:
    settings = Settings.from_env()  # refuse bad settings before connecting anywhere
    metrics = OperatorMetrics()
    if settings.metrics_port:
        try:
            metrics.serve(settings.metrics_port, settings.metrics_address)
        except OSError as error:
            raise SystemExit(
                f"KVBACKUP_METRICS_ADDRESS={settings.metrics_address} and KVBACKUP_METRICS_PORT="
                f"{settings.metrics_port}: cannot serve metrics: {error}"
            ) from None
    import kvbackup.handlers  # noqa: F401  (registers the handlers)
    from kvbackup.handlers.namespaces import watch_namespaces_listed_on_reconnect

    watch_namespaces_listed_on_reconnect()

    # Text lines are prefixed with the object's namespace/name; JSON records carry it
    # under "object".
    log_format = kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.FULL
    kopf.configure(verbose=False, log_format=log_format, log_prefix=None)
    # libuv's event loop and TLS cost less of the operator's CPU per request than asyncio's
    # own; kopf picks it by itself only when run from its own command line.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        kopf.run(
            loop=runner.get_loop(),
            clusterwide=not settings.watch_namespaces,
            namespaces=settings.watch_namespaces,
            standalone=True,
            memo=kopf.Memo(metrics=metrics),
            liveness_endpoint=(
                f"http://0.0.0.0:{settings.health_port}/healthz" if settings.health_port else None
            ),
        )


if __name__ == "__main__":
    main()
