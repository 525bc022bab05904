"""Property-based tests (hypothesis) of what a person controls before an account exists: the
username rules (stacks.names) and the provider's claims (portal.oidc).

The rules are checked against an oracle written independently of the validator: a name is
accepted exactly when it is plain ASCII lowercase letters, digits and single inner hyphens,
starts with a letter, is 2 to 47 long and not reserved. Then each way of disguising a valid name
is tried on every valid name hypothesis draws: Unicode look-alikes (Cyrillic, Greek, the Kelvin
sign, long s, dotless i, mathematical letters), full-width forms, zero-width and other invisible
characters, hyphen look-alikes, combining marks, control characters, case and length.
"""

from __future__ import annotations

import string
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from portal import oidc
from stacks.models import OIDCIdentity
from stacks.names import RESERVED_USERNAMES, USERNAME_MAX, USERNAME_MIN, validate_stack_username

ISSUER = "https://sso.example.test/realms/company"
LOWER = string.ascii_lowercase
ALLOWED = set(LOWER + string.digits + "-")


def plainly_valid(name: str) -> bool:
    """The oracle: the rule in words, without the validator's regular expression."""
    return (
        USERNAME_MIN <= len(name) <= USERNAME_MAX
        and name.isascii()
        and set(name) <= ALLOWED
        and name[0] in LOWER
        and "--" not in name
        and not name.endswith("-")
        and name not in RESERVED_USERNAMES
    )


def accepted(name: Any) -> bool:
    try:
        validate_stack_username(name)
    except ValidationError:
        return False
    return True


def refusal_code(name: str) -> str:
    with pytest.raises(ValidationError) as refused:
        validate_stack_username(name)
    return str(refused.value.code)


# --- Strategies -------------------------------------------------------------------------------


@st.composite
def valid_usernames(draw: st.DrawFn) -> str:
    """Runs of lowercase letters and digits joined by single hyphens, starting with a letter."""
    alnum = LOWER + string.digits
    first = draw(st.sampled_from(LOWER)) + draw(st.text(alnum, max_size=9))
    runs = draw(st.lists(st.text(alnum, min_size=1, max_size=9), max_size=4))
    name = "-".join([first, *runs])
    assume(USERNAME_MIN <= len(name) <= USERNAME_MAX and name not in RESERVED_USERNAMES)
    return name


_CYRILLIC = dict(
    zip("aceopxyijs", "\u0430\u0441\u0435\u043e\u0440\u0445\u0443\u0456\u0458\u0455", strict=True)
)
_GREEK = dict(zip("oivkpx", "\u03bf\u03b9\u03bd\u03ba\u03c1\u03c7", strict=True))
_SPECIAL = {"k": "\u212a", "s": "\u017f", "i": "\u0131", "l": "\u2113", "a": "\u0251"}
INVISIBLE = [
    "\u200b",  # zero-width space
    "\u200c",  # zero-width non-joiner
    "\u200d",  # zero-width joiner
    "\u2060",  # word joiner
    "\ufeff",  # zero-width no-break space (BOM)
    "\u00ad",  # soft hyphen
    "\u034f",  # combining grapheme joiner
    "\u180e",  # Mongolian vowel separator
    "\u202e",  # right-to-left override
]
HYPHENS = ["\u2010", "\u2011", "\u2012", "\u2013", "\u2212", "\ufe63", "\uff0d"]
CONTROL = ["\x00", "\t", "\n", "\r", "\x1b", "\x7f", "\x85", "\u2028", " ", "\u00a0"]
COMBINING = ["\u0301", "\u0308", "\u0338"]


def _lookalike(char: str, draw: st.DrawFn) -> str | None:
    options = [table[char] for table in (_CYRILLIC, _GREEK, _SPECIAL) if char in table]
    if char in LOWER:
        options.append(chr(0xFF41 + LOWER.index(char)))  # full-width
        options.append(chr(0x1D41A + LOWER.index(char)))  # mathematical bold
    if char in string.digits:
        options.append(chr(0xFF10 + int(char)))  # full-width digit
    return draw(st.sampled_from(options)) if options else None


@st.composite
def disguised_usernames(draw: st.DrawFn) -> tuple[str, str]:
    """A valid name with one disguise; returns (valid, disguised)."""
    name = draw(valid_usernames())
    at = draw(st.integers(0, len(name) - 1))
    how = draw(st.sampled_from(["look-alike", "invisible", "hyphen", "control", "combining"]))
    if how == "look-alike":
        swapped = _lookalike(name[at], draw)
        assume(swapped is not None)
        assert swapped is not None
        return name, name[:at] + swapped + name[at + 1 :]
    extra = {
        "invisible": INVISIBLE,
        "hyphen": HYPHENS,
        "control": CONTROL,
        "combining": COMBINING,
    }[how]
    return name, name[:at] + draw(st.sampled_from(extra)) + name[at:]


def recased(name: str, draw: st.DrawFn) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
    return "".join(c.upper() if flip else c for c, flip in zip(name, flips, strict=True))


# Text a person may slip into any value: line breaks, invisible characters, quotes and JSON.
hostile_text = st.lists(
    st.sampled_from([*CONTROL, *INVISIBLE, *HYPHENS, '"', "\\", '{"level": "critical"}', "@"])
    | st.text(max_size=6),
    max_size=8,
).map("".join)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)

# --- The username rules -----------------------------------------------------------------------


@given(st.text(max_size=60) | valid_usernames() | disguised_usernames().map(lambda p: p[1]))
def test_a_name_is_accepted_exactly_when_the_rule_in_words_allows_it(name):
    assert accepted(name) == plainly_valid(name)


@given(valid_usernames())
def test_every_valid_name_is_accepted_and_is_a_dns_label(name):
    assert accepted(name)
    assert f"{name}.ai.example.com".encode("idna").decode() == f"{name}.ai.example.com"


@given(disguised_usernames())
def test_no_disguise_of_a_valid_name_is_accepted(pair):
    valid, disguised = pair
    assert accepted(valid)
    assert refusal_code(disguised) in {"invalid", "length"}


@given(st.data())
def test_a_name_with_a_capital_is_refused(data):
    name = data.draw(valid_usernames())
    shouted = recased(name, data.draw)
    assume(shouted != name)
    assert refusal_code(shouted) == "invalid"


@given(st.sampled_from(sorted(RESERVED_USERNAMES)))
def test_reserved_names_are_refused(name):
    assert refusal_code(name) == "reserved"


@given(st.text(LOWER, min_size=USERNAME_MAX + 1, max_size=200) | st.sampled_from(LOWER))
def test_names_too_long_or_too_short_are_refused(name):
    assert refusal_code(name) == "length"


@given(json_values.filter(lambda value: not isinstance(value, str)))
def test_a_name_that_is_not_text_is_refused(value):
    assert not accepted(value)


# --- Claims -----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _claims_settings(settings):
    settings.OIDC_USERNAME_CLAIM = "preferred_username"
    settings.OIDC_GROUPS_CLAIM = "groups"
    settings.OIDC_STAFF_GROUPS = ["portal-staff", "platform-admins"]


def username_or_refusal(claims: dict[str, Any]) -> str | oidc.UsernameRefused:
    try:
        return oidc.username_from_claims(claims)
    except oidc.UsernameRefused as refusal:
        return refusal


claims_strategy = st.dictionaries(
    st.sampled_from(["preferred_username", "email", "name", "sub", "groups"]),
    json_values
    | hostile_text
    | st.builds("{}@example.com".format, hostile_text)
    | valid_usernames()
    | disguised_usernames().map(lambda p: p[1])
    | st.builds(lambda n, d: f"{n}@{d}", st.text(max_size=20), st.text(max_size=10)),
    max_size=4,
)


@given(claims_strategy)
def test_whatever_the_claims_the_username_is_valid_or_refused_with_a_rule(claims):
    outcome = username_or_refusal(claims)

    if isinstance(outcome, oidc.UsernameRefused):
        assert outcome.rule in oidc.RULE_TITLES
    else:
        assert plainly_valid(outcome)
        claimed = claims.get("preferred_username") or claims["email"].rsplit("@", 1)[0]
        assert claimed.isascii()
        assert outcome == claimed.lower()


@given(disguised_usernames())
def test_a_disguised_claim_is_refused_and_not_repaired(pair):
    _, disguised = pair
    outcome = username_or_refusal({"preferred_username": disguised})

    assert isinstance(outcome, oidc.UsernameRefused)
    assert outcome.rule in {"invalid", "length"}


@given(disguised_usernames())
def test_a_disguised_email_local_part_is_refused(pair):
    _, disguised = pair
    outcome = username_or_refusal({"email": f"{disguised}@example.com"})

    assert isinstance(outcome, oidc.UsernameRefused)


@given(st.data())
def test_a_claim_in_any_case_becomes_its_lowercase_name(data):
    name = data.draw(valid_usernames())
    assert username_or_refusal({"preferred_username": recased(name, data.draw)}) == name


@given(st.data())
def test_a_reserved_claim_in_any_case_is_refused_as_reserved(data):
    name = data.draw(st.sampled_from(sorted(RESERVED_USERNAMES)))
    outcome = username_or_refusal({"preferred_username": recased(name, data.draw)})

    assert isinstance(outcome, oidc.UsernameRefused)
    assert outcome.rule == "reserved"


@st.composite
def group_lookalikes(draw: st.DrawFn) -> str:
    group = draw(st.sampled_from(["portal-staff", "platform-admins"]))
    how = draw(st.sampled_from(["case", "space", "prefix", "suffix", "invisible", "swap"]))
    if how == "case":
        changed = recased(group, draw)
        assume(changed != group)
        return changed
    at = draw(st.integers(0, len(group) - 1))
    return {
        "space": f" {group}",
        "prefix": f"/{group}",
        "suffix": f"{group}-readonly",
        "invisible": group[:at] + draw(st.sampled_from(INVISIBLE)) + group[at:],
        "swap": group[:at] + (_lookalike(group[at], draw) or "\u2011") + group[at + 1 :],
    }[how]


@given(st.lists(group_lookalikes() | st.text(max_size=12), max_size=4))
def test_only_an_exact_staff_group_makes_staff(groups):
    assert oidc.is_staff_member({"groups": groups}) is False
    assert oidc.is_staff_member({"groups": [*groups, "platform-admins"]}) is True


@given(json_values)
def test_a_groups_claim_of_any_other_shape_is_not_staff(groups):
    assume("portal-staff" not in repr(groups) and "platform-admins" not in repr(groups))
    assert oidc.is_staff_member({"groups": groups}) is False


# --- Claims to accounts, in the database ------------------------------------------------------

# The ID token's `sub`, signed by the provider: any text a database can hold.
SUBJECTS = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
    min_size=1,
    max_size=40,
)


@pytest.mark.django_db
@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(claims=claims_strategy, subject=SUBJECTS)
def test_an_account_is_created_only_with_a_valid_username(claims, subject):
    with transaction.atomic():
        try:
            user = oidc.sign_in_account(issuer=ISSUER, subject=subject, claims=claims)
        except oidc.UsernameRefused:
            assert (User.objects.count(), OIDCIdentity.objects.count()) == (0, 0)
        else:
            assert plainly_valid(user.username)
            assert OIDCIdentity.objects.get(subject=subject).user == user
        transaction.set_rollback(True)


@pytest.mark.parametrize(
    "email",
    [
        "kate\x00@example.com",
        "kate\r\nBcc: all@example.com",
        "\ud800@example.com",
        "kate@exa\u2028mple.com",
        "not an address",
        f"{'k' * 250}@example.com",
    ],
)
def test_an_email_claim_that_is_no_address_is_not_stored(db, email):
    user = oidc.sign_in_account(
        issuer=ISSUER, subject="sub-kate", claims={"preferred_username": "kate", "email": email}
    )

    assert User.objects.get(pk=user.pk).email == ""


@pytest.mark.django_db
@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(email=hostile_text | st.builds("{}@example.com".format, hostile_text))
def test_an_email_claim_is_kept_only_as_a_printable_address(email):
    with transaction.atomic():
        user = oidc.sign_in_account(
            issuer=ISSUER, subject="sub-kate", claims={"preferred_username": "kate", "email": email}
        )
        stored = User.objects.get(pk=user.pk).email
        transaction.set_rollback(True)

    assert stored.isprintable()
    if stored:  # kept, then exactly as claimed
        assert (stored, "@" in stored) == (email, True)
