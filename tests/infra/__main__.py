"""Run a test service by hand: ``python -m tests.infra kafka|postgres|fetch-kafka``.

``kafka`` and ``postgres`` start one (same order of sources as the fixtures), print its
address, and stop it on Ctrl-C or SIGTERM; ``fetch-kafka`` only caches the broker's jars.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from tests.infra.kafka_broker import ensure_kafka_jars, kafka_broker
from tests.infra.postgres import postgres_server
from tests.infra.processes import ServiceUnavailable


def _wait_for_signal() -> None:
    signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    signal.sigwait(signals)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.infra", description=__doc__)
    parser.add_argument("service", choices=["kafka", "postgres", "fetch-kafka"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("fairwatch.tests.infra").setLevel(logging.INFO)
    try:
        if args.service == "fetch-kafka":
            print(ensure_kafka_jars(), flush=True)
        elif args.service == "kafka":
            with kafka_broker() as broker:
                print(f"bootstrap_servers={broker.bootstrap_servers}", flush=True)
                print(f"log={broker.log_path}", flush=True)
                _wait_for_signal()
        else:
            with postgres_server() as server:
                print(f"dsn={server.dsn}", flush=True)
                _wait_for_signal()
    except ServiceUnavailable as exc:
        print(f"unavailable: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
