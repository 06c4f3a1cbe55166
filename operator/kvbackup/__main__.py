"""Entry point: ``python -m kvbackup`` (or ``kvbackup-operator``) runs the operator."""

from __future__ import annotations

import kopf

from kvbackup.config import Settings


def main() -> None:
    settings = Settings.from_env()  # refuse bad settings before connecting anywhere
    import kvbackup.handlers  # noqa: F401  (registers the handlers)

    # Text lines are prefixed with the object's namespace/name; JSON records carry it
    # under "object".
    log_format = kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.FULL
    kopf.configure(verbose=False, log_format=log_format, log_prefix=None)
    kopf.run(
        clusterwide=not settings.watch_namespaces,
        namespaces=settings.watch_namespaces,
        standalone=True,
        liveness_endpoint=(
            f"http://0.0.0.0:{settings.health_port}/healthz" if settings.health_port else None
        ),
    )


if __name__ == "__main__":
    main()
