"""The health steps, shared by provision and start: is the deployed stack really up?

Container status from Dokploy, then /health until it answers (bounded by HEALTH_TIMEOUT and the
attempt's deadline), DNS and HTTPS when STACK_CHECK_DNS is on, and the ttyd terminal.
"""

from __future__ import annotations

from django.conf import settings

from stacks import health
from stacks.models import DeploymentStep
from stacks.pipeline.journal import StepFailed, StepOutcome
from stacks.pipeline.run import Run

Phase = DeploymentStep.Phase
Action = DeploymentStep.Action
PROBE_TIMEOUT_MAX = 10.0


def check_health(run: Run, application_id: str) -> None:
    base = health.stack_base_url(run.target.host)
    with run.step(Phase.HEALTH, Action.QUERY, "Container status") as outcome:
        application = run.client.application_one(application_id)
        _record(outcome, health.check_container(application.application_status))
    with run.step(Phase.HEALTH, Action.QUERY, "GET /health") as outcome:
        timeout = min(float(settings.HEALTH_TIMEOUT), run.seconds_left())
        result = health.wait_until_healthy(
            base, interval=float(settings.HEALTH_INTERVAL), timeout=timeout, wait=run.wait
        )
        _record(outcome, result)
    if settings.STACK_CHECK_DNS:
        with run.step(Phase.HEALTH, Action.QUERY, "DNS and HTTPS") as outcome:
            result = health.check_dns_https(run.target.host, timeout=_probe_timeout(run))
            _record(outcome, result)
    with run.step(Phase.HEALTH, Action.QUERY, "Web terminal (ttyd)") as outcome:
        _record(outcome, health.check_ttyd(base, timeout=_probe_timeout(run)))


def _probe_timeout(run: Run) -> float:
    """A health probe's timeout, cut to the attempt's deadline (the step checked it)."""
    return max(0.1, min(PROBE_TIMEOUT_MAX, run.seconds_left()))


def _record(outcome: StepOutcome, result: health.CheckResult) -> None:
    outcome.summary = result.detail
    outcome.response = {"check": result.name, "ok": result.ok, "tries": result.tries}
    if not result.ok:
        raise StepFailed(Phase.HEALTH, "UNHEALTHY", result.detail)
