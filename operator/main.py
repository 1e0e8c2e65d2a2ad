"""`multitalk-operator`: run the kopf operator with the settings from MULTITALK_* variables."""

from __future__ import annotations

import argparse
import logging
import sys

import kopf
from pydantic import ValidationError

from multitalk.operator import metrics
from multitalk.operator.settings import OperatorSettings
from multitalk.runner.request import describe_validation_error


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="multitalk-operator",
        description="Turn TalkingVideo objects into GPU Jobs and report their status. "
        "Configured by MULTITALK_* environment variables (see operator/settings.py).",
    )
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # kopf logs each handler call at INFO ("Handler 'job_event' succeeded."): a line per
        # watch event, 15,000 for 1,000 renders, and CPU the events themselves need.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    try:
        settings = OperatorSettings()
    except ValidationError as exc:
        print(f"multitalk-operator: bad settings: {describe_validation_error(exc, 'MULTITALK')}", file=sys.stderr)
        return 2
    # Importing registers the handlers with kopf's default registry.
    from multitalk.operator import handlers

    metrics.serve(settings.metrics_port)
    kopf.run(
        standalone=True,  # one replica (Deployment strategy Recreate): no peering objects needed
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        liveness_endpoint=f"http://0.0.0.0:{settings.health_port}/healthz",
        settings=handlers.kopf_settings(settings),
        memo=kopf.Memo(settings=settings),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
