import base64
import datetime as dt
import json

import jwt
import pytest

from streams.auth import AuthConfigError, AuthError, Principal, bearer_token, issue_token, verify, verify_token
from streams.identity import mask

SECRET = "test-secret-for-tkonto-at-least-32-bytes"
OTHER_SECRET = "another-secret-for-tkonto-32-bytes-long"
PERSON = "198112189876"
NOW = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.timezone.utc)


def header(token: str) -> str:
    return f"Bearer {token}"


def fresh(role="citizen", subject=PERSON, ttl=600, secret=SECRET) -> str:
    return issue_token(secret, subject, role, ttl)


def raw_token(claims: dict, secret=SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


def status_of(call) -> tuple[int, str]:
    with pytest.raises(AuthError) as info:
        call()
    return info.value.status, info.value.message


def test_issued_token_has_exactly_the_claims():
    token = issue_token(SECRET, PERSON, "citizen", 3600, now=NOW)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False, "verify_iat": False})
    ts = int(NOW.timestamp())
    assert claims == {"sub": PERSON, "role": "citizen", "iat": ts, "exp": ts + 3600, "iss": "tkonto"}
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}


def test_valid_citizen_and_analyst_tokens_verify():
    assert verify(SECRET, header(fresh()), "citizen") == Principal(PERSON, "citizen")
    assert verify(SECRET, header(fresh("analyst", "analyst-anna")), "analyst") == Principal("analyst-anna", "analyst")
    assert verify(SECRET, "bearer " + fresh(), "citizen").subject == PERSON  # scheme is case-insensitive
    assert verify_token(SECRET, fresh(), "citizen") == Principal(PERSON, "citizen")


@pytest.mark.parametrize("value, message", [
    (None, "missing bearer token: send 'Authorization: Bearer <token>'"),
    ("", "missing bearer token: send 'Authorization: Bearer <token>'"),
    ("   ", "missing bearer token: send 'Authorization: Bearer <token>'"),
    ("Basic dXNlcjpwYXNz", "malformed Authorization header: expected 'Bearer <token>'"),
    ("Bearer", "malformed Authorization header: expected 'Bearer <token>'"),
    ("Bearer a b", "malformed Authorization header: expected 'Bearer <token>'"),
    ("Bearer not-a-jwt", "malformed token"),
    ("Bearer a.b.c", "malformed token"),
])
def test_missing_or_malformed_header_is_401(value, message):
    assert status_of(lambda: verify(SECRET, value, "citizen")) == (401, message)


def test_wrong_signature_is_401():
    token = fresh(secret=OTHER_SECRET)
    assert status_of(lambda: verify(SECRET, header(token), "citizen")) == (401, "token signature is not valid")


def test_tampered_payload_is_401():
    head, _, sig = fresh().split(".")
    forged = base64.urlsafe_b64encode(json.dumps(
        {"sub": "197001011239", "role": "citizen", "iat": 1, "exp": 4102444800, "iss": "tkonto"}).encode()).rstrip(b"=")
    token = f"{head}.{forged.decode()}.{sig}"
    assert status_of(lambda: verify(SECRET, header(token), "citizen")) == (401, "token signature is not valid")


def test_alg_none_is_401():
    token = jwt.encode({"sub": PERSON, "role": "citizen", "iat": 1, "exp": 4102444800, "iss": "tkonto"},
                       None, algorithm="none")
    assert status_of(lambda: verify(SECRET, header(token), "citizen")) == (
        401, "token algorithm not accepted; only HS256")


def test_expired_is_401():
    token = issue_token(SECRET, PERSON, "citizen", 60, now=dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1))
    assert status_of(lambda: verify(SECRET, header(token), "citizen")) == (401, "token expired")


def test_expiry_against_a_given_clock():
    token = issue_token(SECRET, PERSON, "citizen", 60, now=NOW)
    assert verify(SECRET, header(token), "citizen", now=NOW + dt.timedelta(seconds=59)).subject == PERSON
    assert status_of(lambda: verify(SECRET, header(token), "citizen", now=NOW + dt.timedelta(seconds=60))) == (
        401, "token expired")


def test_wrong_role_is_403_without_the_identity_number():
    status, message = status_of(lambda: verify(SECRET, header(fresh()), "analyst"))
    assert (status, message) == (403, "a citizen token may not use this resource; it needs the analyst role")
    status, _ = status_of(lambda: verify(SECRET, header(fresh("analyst", "analyst-anna")), "citizen"))
    assert status == 403


def test_wrong_issuer_is_401():
    ts = int(dt.datetime.now(dt.timezone.utc).timestamp())
    token = raw_token({"sub": PERSON, "role": "citizen", "iat": ts, "exp": ts + 60, "iss": "someone-else"})
    assert status_of(lambda: verify(SECRET, header(token), "citizen")) == (401, "token issuer is not 'tkonto'")


@pytest.mark.parametrize("missing", ["sub", "role", "iat", "exp", "iss"])
def test_missing_claim_is_401(missing):
    ts = int(dt.datetime.now(dt.timezone.utc).timestamp())
    claims = {"sub": PERSON, "role": "citizen", "iat": ts, "exp": ts + 60, "iss": "tkonto"}
    del claims[missing]
    assert status_of(lambda: verify(SECRET, header(raw_token(claims)), "citizen")) == (
        401, f"token lacks the {missing!r} claim")


def test_unknown_role_and_invalid_citizen_subject_are_401_and_masked():
    ts = int(dt.datetime.now(dt.timezone.utc).timestamp())
    token = raw_token({"sub": PERSON, "role": "admin", "iat": ts, "exp": ts + 60, "iss": "tkonto"})
    assert status_of(lambda: verify(SECRET, header(token), "citizen")) == (401, "token role is unknown")
    bad_number = "198112189875"  # wrong check digit
    token = raw_token({"sub": bad_number, "role": "citizen", "iat": ts, "exp": ts + 60, "iss": "tkonto"})
    status, message = status_of(lambda: verify(SECRET, header(token), "citizen"))
    assert (status, message) == (401, f"token subject {mask(bad_number)} is not a valid identity number")
    assert bad_number not in message


def test_empty_secret_names_the_setting():
    with pytest.raises(AuthConfigError, match="TKONTO_JWT_SECRET"):
        issue_token("", PERSON, "citizen", 60)
    with pytest.raises(AuthConfigError, match="TKONTO_JWT_SECRET"):
        verify("", header("x.y.z"), "citizen")


def test_issue_rejects_bad_arguments_without_the_number_in_clear():
    with pytest.raises(ValueError, match="unknown role 'admin'"):
        issue_token(SECRET, PERSON, "admin", 60)
    with pytest.raises(ValueError, match="positive"):
        issue_token(SECRET, PERSON, "citizen", 0)
    with pytest.raises(ValueError) as info:
        issue_token(SECRET, "198112189875", "citizen", 60)
    assert "198112189875" not in str(info.value) and mask("198112189875") in str(info.value)


def test_principal_repr_is_log_safe():
    assert PERSON not in repr(Principal(PERSON, "citizen"))
    assert bearer_token("Bearer abc") == "abc"
