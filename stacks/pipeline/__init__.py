"""The deployment pipeline: the one writer of DeploymentAttempt and DeploymentStep records.

A run takes one attempt from claimed to a terminal state. The modules, bottom to top (a module
imports only from those above it in this list, and a phase never imports another phase):

    target      what the stack should look like in Dokploy (names, domain settings)
    journal     step records and outcomes; the exceptions that fail or stop a run
    lease       claiming an attempt, the heartbeat, telling that a holder died
    run         a run's state: steps, checkpoints, waits, intents, the client's hooks
    lookups     finding the stack's project, application and domain (shared by phases)
    checks      the health steps (shared by provision and start)
    provision   create and redeploy: project, environment, application, domain, deploy, health
    operations  stop, start, teardown
    rollback    after a failure: undo what this attempt created, and end it
    execute     the table of handlers by kind, resuming, and run_attempt()
"""

from stacks.pipeline.execute import HANDLERS, run_attempt
from stacks.pipeline.lease import MAX_RUNS, claim, holder_is_dead, lease_seconds, worker_identity
from stacks.pipeline.run import Run

__all__ = [
    "HANDLERS",
    "MAX_RUNS",
    "Run",
    "claim",
    "holder_is_dead",
    "lease_seconds",
    "run_attempt",
    "worker_identity",
]
