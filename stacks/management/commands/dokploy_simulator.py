"""``manage.py dokploy_simulator``: run the Dokploy API simulator in the foreground."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from stacks.dokploy.simulator import DEFAULT_API_KEY, DokploySimulator, run_until_signalled


class Command(BaseCommand):
    help = "Serve a simulated Dokploy API (and the stacks' public side) until SIGINT or SIGTERM."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument(
            "--port",
            type=int,
            default=getattr(settings, "DOKPLOY_SIMULATOR_PORT", 3000),
            help="port to listen on (default: DOKPLOY_SIMULATOR_PORT); 0 picks a free one",
        )
        parser.add_argument(
            "--api-key",
            default=None,
            help='the accepted x-api-key (default: DOKPLOY_API_KEY, else "simulator-key")',
        )
        parser.add_argument("--deploy-seconds", type=float, default=1.0)
        parser.add_argument("--queue-delay", type=float, default=0.05)
        parser.add_argument("--latency", type=float, default=0.0)
        parser.add_argument(
            "--volume-release-seconds",
            type=float,
            default=0.0,
            help="how long a deleted service's volumes stay in use",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        api_key = options["api_key"] or getattr(settings, "DOKPLOY_API_KEY", "") or DEFAULT_API_KEY
        simulator = DokploySimulator(
            api_key=api_key,
            host=options["host"],
            port=options["port"],
            deploy_seconds=options["deploy_seconds"],
            queue_delay=options["queue_delay"],
            latency=options["latency"],
            volume_release_seconds=options["volume_release_seconds"],
        )

        def announce(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()

        run_until_signalled(simulator, announce)
