"""A value a person controls cannot split or forge a log line, in JSON or in text.

A username claim, a staff reason, a form field, a path or a header may hold CR, LF, other line
breaks (NEL, U+2028), escape sequences or a whole JSON object. Whatever it holds, a record is
written as one JSON object on one line whose fields come back exactly as given, or as one text
line with the breaks escaped and a traceback only on indented lines below.
"""

from __future__ import annotations

import io
import json
import logging
import re
import sys

import pytest
from django.contrib.auth.models import User
from django.test import Client
from hypothesis import assume, given
from hypothesis import strategies as st

from stacks.logging import JsonFormatter, TextFormatter, one_line
from stacks.redaction import redact_text
from tests.logs import every_record, written
from tests.pages import deployed_stack
from tests.test_oidc import sign_in, sso  # noqa: F401 (the fixture)

FORGED = '\n{"timestamp": "2026-01-01T00:00:00.000+00:00", "level": "critical", "message": "x"}'
BREAKS = ["\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]

hostile = st.lists(
    st.sampled_from([*BREAKS, FORGED, '"', "\\", "\x1b[2J", "\x00", "%s", "%(message)s"])
    | st.text(max_size=8),
    max_size=10,
).map("".join)
TEXT_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.]+ ")


def record(message: str, *, args: tuple[object, ...] = (), **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("portal.test", logging.INFO, __file__, 1, message, args, None)
    made.__dict__.update(extra)
    return made


def failing_record(message: str) -> logging.LogRecord:
    try:
        raise ValueError(message)
    except ValueError:
        made = logging.LogRecord(
            "portal.test", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    return made


def assert_one_json_line(line: str) -> dict[str, object]:
    assert line.splitlines() == [line]
    assert line.isascii()  # every break and invisible character escaped
    parsed = json.loads(line)
    assert isinstance(parsed, dict)
    return parsed


def assert_text_record(text: str) -> list[str]:
    """One record in the text format: its first line starts a record, the rest are indented."""
    first, *below = text.splitlines()
    assert text.split("\n") == [first, *below]  # no other character broke a line
    assert TEXT_START.match(first)
    assert all(line.isprintable() for line in [first, *below])
    assert all(line.startswith("    ") for line in below)
    return below


# --- The formatters, for any text -------------------------------------------------------------


@given(hostile, hostile)
def test_json_keeps_any_value_in_its_field_on_one_line(message, value):
    assume(redact_text(message + value) == message + value)  # no known secret inside

    line = JsonFormatter().format(
        record(message, username=value, claimed=value, reason=value, path=value)
    )

    parsed = assert_one_json_line(line)
    assert set(parsed) == {
        "timestamp",
        "level",
        "logger",
        "message",
        "username",
        "claimed",
        "reason",
        "path",
    }
    assert (parsed["message"], parsed["level"], parsed["logger"]) == (
        message,
        "info",
        "portal.test",
    )
    assert parsed["username"] == parsed["claimed"] == parsed["reason"] == parsed["path"] == value


@given(hostile)
def test_json_keeps_a_value_given_as_an_argument_in_the_message(value):
    assume(redact_text(value) == value)

    parsed = assert_one_json_line(JsonFormatter().format(record("refused %s", args=(value,))))

    assert parsed["message"] == f"refused {value}"


@given(hostile)
def test_json_keeps_a_traceback_on_the_same_line(value):
    assume(redact_text(value) == value)

    parsed = assert_one_json_line(JsonFormatter().format(failing_record(value)))

    assert "ValueError" in str(parsed["exc_info"])


@given(hostile)
def test_text_writes_any_message_as_one_escaped_line(value):
    text = TextFormatter().format(record("refused %s", args=(value,)))

    assert assert_text_record(text) == []
    assert text.endswith(f" refused {one_line(redact_text(value))}")


@given(hostile)
def test_text_indents_every_line_of_a_traceback(value):
    text = TextFormatter().format(failing_record(value))

    below = assert_text_record(text)
    assert below[0] == "    Traceback (most recent call last):"
    assert [line for line in below if line.startswith("    ValueError")] != []


def test_text_writes_breaks_and_escape_sequences_as_escapes():
    text = TextFormatter().format(record("a\r\nb\x1b[2J\u2028c\td"))

    assert text.endswith(r" a\r\nb\x1b[2J\u2028c\td")


def test_text_masks_known_secrets(monkeypatch):
    from stacks import redaction

    monkeypatch.setattr(redaction, "_secrets", {"hunter2-canary-key"})
    text = TextFormatter().format(failing_record("key hunter2-canary-key refused"))

    assert "hunter2-canary-key" not in text
    assert "key [redacted] refused" in text


# --- Values people send, through the portal ---------------------------------------------------


def assert_every_line_is_one_record(records: list[logging.LogRecord]) -> None:
    assert records, "something was logged"
    for out in written(records):
        if out.startswith("{"):
            assert_one_json_line(out)
        else:
            assert_text_record(out)


def test_a_username_claim_cannot_forge_a_line(client, sso, db):  # noqa: F811
    with every_record() as records:
        response = sign_in(client, sso, "sub-x", preferred_username=f"eve{FORGED}")

    assert response.status_code == 403
    assert_every_line_is_one_record(records)
    refused = [r for r in records if r.getMessage() == "sign-in refused"]
    assert len(refused) == 1
    claimed = assert_one_json_line(JsonFormatter().format(refused[0]))["claimed"]
    assert claimed == f"eve{FORGED}"[:64]  # as given, cut to 64 characters


def test_paths_headers_and_form_fields_cannot_forge_a_line(client, db, settings):
    with every_record() as records:
        client.get("/no-such-page%0D%0A" + "%7B%22level%22%3A%22critical%22%7D")
        client.get("/", HTTP_HOST="evil.example\r\nX-Forged: 1")
        client.get(
            "/history/",
            HTTP_USER_AGENT=FORGED,
            HTTP_REFERER=FORGED,
            HTTP_X_FORWARDED_FOR=f"203.0.113.9{FORGED}",
        )
        settings.DEBUG = True  # the local sign-in form
        client.post("/sign-in", {"username": f"eve{FORGED}", "next": FORGED})
        settings.DEBUG = False
        Client(enforce_csrf_checks=True).post(f"/sign-out?{FORGED}", {"x": FORGED})

    assert len(records) >= 3  # 404, the refused host, the refused form post
    assert_every_line_is_one_record(records)


def test_a_staff_reason_cannot_forge_a_line(alice, db):
    staff = User.objects.create_superuser("olga", "olga@example.com", "correct-horse")
    stack = deployed_stack(alice)
    as_staff = Client()
    as_staff.force_login(staff)

    with every_record() as records:
        as_staff.post(
            "/admin/stacks/stack/",
            {
                "action": "stop",
                "_selected_action": [stack.pk],
                "confirm": "yes",
                "reason": f"user asked{FORGED}",
            },
        )
        logging.getLogger("portal.test").warning(
            "staff action", extra={"reason": stack.staff_actions.get().reason}
        )

    assert stack.staff_actions.get().reason == f"user asked{FORGED}"
    assert_every_line_is_one_record(records)


def test_the_logging_setting_writes_with_these_formatters(settings):
    assert settings.LOGGING["formatters"] == {
        "json": {"()": "stacks.logging.JsonFormatter"},
        "text": {"()": "stacks.logging.TextFormatter"},
    }


@pytest.mark.parametrize("formatter", [JsonFormatter, TextFormatter])
@pytest.mark.parametrize("value", [FORGED, "\u2028forged", "\x85forged", "\r\nforged"])
def test_a_stream_gets_one_line_per_record(formatter, value):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter())

    handler.emit(record("claimed %s", args=(value,), claimed=value))

    assert stream.getvalue().count("\n") == 1
    assert stream.getvalue().endswith("\n")
