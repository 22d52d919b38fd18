"""Redaction by value, and which names look secret."""

from __future__ import annotations

from tui_connector.redact import Redactor, looks_secret


def test_redactor_replaces_plain_and_url_encoded_values() -> None:
    redact = Redactor(["s3cr3t/+value"])
    assert redact("a s3cr3t/+value b") == "a *** b"
    assert redact("?k=s3cr3t%2F%2Bvalue") == "?k=***"
    assert Redactor(["ab"])("ab") == "ab"  # too short to be a real secret


def test_redactor_removes_the_first_part_of_a_secret_cut_short() -> None:
    redact = Redactor(["s3cr3t/+value"])
    assert redact('{"q":"s3cr3t/+va…') == '{"q":"***…'  # an excerpt cut mid-secret
    assert redact("Authorization: s3cr3t/") == "Authorization: ***"  # a text cut at its end
    assert redact("s3cr3t/ is not cut here") == "s3cr3t/ is not cut here"
    assert redact("ends in s3c") == "ends in s3c"  # too little of it to matter


def test_secret_names_are_recognised_broadly() -> None:

    for name in ("key", "MAPS_KEY", "access_key", "X-Api-Key", "DB_PASS", "gh_pat", "token"):
        assert looks_secret(name), name
    for name in ("page", "per_page", "cursor", "DEMO_URL", "limit"):
        assert not looks_secret(name), name


def test_secrets_added_later_are_redacted_whole_and_cut() -> None:
    redact = Redactor(["configured-secret"])
    tokens = [f"token-{n:03d}-Zq+/=xyz" for n in range(120)]  # a long run's OAuth2 tokens
    for token in tokens:
        redact.add(token)
    assert redact(f"a {tokens[7]} b {tokens[110]}") == "a *** b ***"
    assert redact(f"x={tokens[99][:12]}… and {tokens[5][:9]}") == "x=***… and ***"
    assert redact("configured-secret tok") == "*** tok"  # too little of any token
    assert redact("token-0 is no cut") == "token-0 is no cut"
    # Of the parts that begin a token at a cut, the longest goes.
    assert redact("token-toke…") == "token-***…"
    assert redact("token-001-Zq+/…") == "***…"
    # Every cut of a text, from its end leftwards.
    assert redact("a token-00… b token-11… c token-1") == "a ***… b ***… c ***"
