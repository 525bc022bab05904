"""Telling staff that provisioning is unwell: the circuit breaker open, a rollback that failed,
orphans the reconciler found in Dokploy. By mail to ADMINS (`mail_admins`) and, when
ALERT_WEBHOOK_URL is set, a JSON POST (a chat's incoming webhook, for example).

One message per outage, not one per occurrence. Each condition is an AlertState row shared by
every process. The first occurrence starts the outage with a conditional UPDATE (inactive to
active), and only the process whose UPDATE changed the row sends the message; later
occurrences only add to its count. The end of the outage is the opposite UPDATE, and the
process that made it sends the recovery message with the count.

  breaker:NAME      starts when the breaker opens, counts each time it opens again after a
                    failed probe, ends when it closes (probes succeeded, or reset by hand)
  rollback_failed   starts when a rollback leaves something in Dokploy, counts each one that
                    does, ends when a later rollback removes everything it had to
  orphans           starts when a reconcile run finds orphan projects or applications it did
                    not remove, counts each such run, ends with a run that leaves none

Messages go out once the surrounding transaction commits (a change rolled back announces
nothing), and sending never raises: a mail server or webhook that fails is logged, and the
pipeline carries on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from django.conf import settings
from django.core.mail import mail_admins
from django.db import transaction
from django.db.models import F
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from stacks.models import AlertState, BreakerState, ReconcileFinding, ReconcileRun
from stacks.redaction import redact_text

logger = logging.getLogger("stacks.alerts")

ROLLBACK_FAILED = "rollback_failed"
ORPHANS = "orphans"
FIRING = "firing"
RESOLVED = "resolved"
DETAIL_MAX = 2000


def breaker_key(name: str) -> str:
    return f"breaker:{name}"


def title(key: str) -> str:
    """What a condition is called on the staff pages."""
    if key.startswith("breaker:"):
        return f"Dokploy unavailable: circuit breaker {key.removeprefix('breaker:')} open"
    return {
        ROLLBACK_FAILED: "Rollbacks leave resources in Dokploy",
        ORPHANS: "Orphans in Dokploy",
    }.get(key, key)


@dataclass(frozen=True)
class Message:
    key: str
    status: str  # FIRING or RESOLVED
    subject: str
    body: str
    count: int
    started_at: datetime | None
    ended_at: datetime | None
    detail: str

    def payload(self) -> dict[str, Any]:
        """The webhook's JSON; `text` is what Slack- and Mattermost-style webhooks show."""
        return {
            "text": f"{self.subject}\n{self.body}",
            "alert": self.key,
            "status": self.status,
            "summary": self.subject,
            "count": self.count,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "detail": self.detail,
            "dashboard": dashboard_url(),
        }


# --- What happened ----------------------------------------------------------------------------


def breaker_changed(name: str, state: str, reason: str) -> None:
    """Called by stacks.resilience after the UPDATE that changed the breaker's state."""
    key = breaker_key(name)
    now = _when(timezone.now())
    if state == BreakerState.State.OPEN:
        occurred(
            key,
            f"opened at {now}: {reason}",
            subject=f"Dokploy unavailable: circuit breaker {name} open",
            opening=(
                f"The circuit breaker {name} opened at {now} ({reason}). Requests to Dokploy "
                "fail at once with BREAKER_OPEN, so deployments fail until it closes. Each "
                "time it opens again after a failed probe is counted; the next message says "
                "when it closed."
            ),
        )
    elif state == BreakerState.State.CLOSED:
        ended(
            key,
            subject=f"Dokploy answers again: circuit breaker {name} closed",
            closing=f"The circuit breaker {name} closed at {now} ({reason}).",
            counted="Times it opened",
        )


def rollback_ended(
    *, attempt_id: int, kind: str, username: str, status: str, errors: list[str]
) -> None:
    """Called by the pipeline when an attempt's rollback has ended."""
    label = f"attempt #{attempt_id} ({kind} of {username}'s stack)"
    if errors:
        left = "; ".join(errors)
        occurred(
            ROLLBACK_FAILED,
            f"{label}: {left}",
            subject="A rollback failed: resources were left in Dokploy",
            opening=(
                f"The rollback of {label} left something in Dokploy: {left}. The stack "
                "still records it or the reconciler reports it as an orphan. Further failed "
                "rollbacks are counted; the next message says when a rollback succeeded again."
            ),
        )
    elif status == "rolled_back":
        ended(
            ROLLBACK_FAILED,
            subject="Rollbacks succeed again",
            closing=f"The rollback of {label} removed everything it created.",
            counted="Failed rollbacks",
        )


def reconcile_finished(run: ReconcileRun) -> None:
    """Called after a reconcile run that read Dokploy to the end."""
    orphans = list(
        run.findings.filter(kind__in=ReconcileFinding.ORPHANS)
        .exclude(fix=ReconcileFinding.Fix.REMOVED)
        .values_list("project_name", "application_name", "project_id")
    )
    if orphans:
        names = ", ".join(app or project or pid for project, app, pid in orphans[:10])
        more = f" and {len(orphans) - 10} more" if len(orphans) > 10 else ""
        occurred(
            ORPHANS,
            f"run #{run.pk}: {len(orphans)} orphan(s): {names}{more}",
            subject=f"The reconciler found {len(orphans)} orphan(s) in Dokploy",
            opening=(
                f"Reconcile run #{run.pk} found {len(orphans)} orphan project(s) or "
                f"application(s) that no stack records: {names}{more}. They use Dokploy's "
                "resources and may hold someone's work. Later runs that still find orphans are "
                "counted; the next message says when a run found none."
            ),
        )
    else:
        ended(
            ORPHANS,
            subject="No orphans left in Dokploy",
            closing=f"Reconcile run #{run.pk} found no orphan project or application.",
            counted="Runs that found orphans",
        )


# --- One message per outage -------------------------------------------------------------------


def occurred(key: str, detail: str, *, subject: str, opening: str) -> bool:
    """One occurrence of the condition. True when it started an outage (and sent its message)."""
    now = timezone.now()
    detail = redact_text(detail)[:DETAIL_MAX]
    AlertState.objects.get_or_create(key=key)
    started = AlertState.objects.filter(key=key, active=False).update(
        active=True, started_at=now, last_seen_at=now, ended_at=None, count=1, detail=detail
    )
    if not started:
        AlertState.objects.filter(key=key, active=True).update(
            count=F("count") + 1, last_seen_at=now, detail=detail
        )
        return False
    body = f"{redact_text(opening)}\n\nDashboard: {dashboard_url()}"
    _send(Message(key, FIRING, subject, body, 1, now, None, detail))
    return True


def ended(key: str, *, subject: str, closing: str, counted: str) -> bool:
    """The condition is over. True when this ended an outage (and sent the recovery)."""
    now = timezone.now()
    if not AlertState.objects.filter(key=key, active=True).update(active=False, ended_at=now):
        return False
    state = AlertState.objects.get(key=key)
    lasted = _duration(now - state.started_at) if state.started_at else "a while"
    body = (
        f"{redact_text(closing)} It lasted {lasted}, since {_when(state.started_at)}.\n"
        f"{counted}: {state.count}. The last: {state.detail}\n\nDashboard: {dashboard_url()}"
    )
    _send(Message(key, RESOLVED, subject, body, state.count, state.started_at, now, state.detail))
    return True


def _send(message: Message) -> None:
    transaction.on_commit(lambda: deliver(message))


def deliver(message: Message) -> None:
    """Mail the admins and call the webhook; log, never raise, when either fails."""
    try:
        mail_admins(message.subject, message.body, fail_silently=True)
    except Exception:
        logger.exception("could not mail the admins", extra={"alert": message.key})
    url = settings.ALERT_WEBHOOK_URL
    if url:
        try:
            answer = httpx.post(
                url, json=message.payload(), timeout=float(settings.ALERT_WEBHOOK_TIMEOUT)
            )
            if answer.status_code >= 300:
                logger.warning(
                    "the alert webhook answered %s",
                    answer.status_code,
                    extra={"alert": message.key},
                )
        except Exception as exc:  # the URL itself may hold a secret: never log it
            logger.warning(
                "could not call the alert webhook: %s",
                type(exc).__name__,
                extra={"alert": message.key},
            )
    logger.info(
        "%s: %s",
        message.status,
        message.subject,
        extra={"alert": message.key, "count": message.count},
    )


def dashboard_url() -> str:
    try:
        path = reverse("admin:stacks_dashboard")
    except NoReverseMatch:
        path = "/admin/"
    return f"{settings.SITE_URL.rstrip('/')}{path}"


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "unknown"


def _duration(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
