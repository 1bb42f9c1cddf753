"""Signed playback URLs (media.signing), without sockets or clocks: tables around a fixed T0."""

from __future__ import annotations

import pytest

from media.errors import InvalidInput
from media.ids import is_title_id
from media.signing import (
    Allowed,
    Forbidden,
    Grant,
    Refusal,
    Refused,
    SigningKeys,
    TokenChecker,
    make_token,
    signed_path,
    split_signed,
    verify_token,
)

T0 = 1_795_600_800.0
NEW = SigningKeys((b"new-key-0123456789abcdef",))
OLD = SigningKeys((b"old-key-0123456789abcdef",))
BOTH = SigningKeys((NEW.keys[0], OLD.keys[0]))
TITLE = "/titles/show-abc123/"
SEGMENT = TITLE + "360p/seg_00001.m4s"


def token(
    keys: SigningKeys = NEW, prefix: str = TITLE, expires: float = T0 + 60, client: str | None = None
) -> str:
    return make_token(keys, Grant(prefix, int(expires), client))


def tampered(text: str, field: int, value: str) -> str:
    parts = text.split(".")
    parts[field] = value
    return ".".join(parts)


@pytest.mark.parametrize(
    ("keys", "path", "client", "now", "expected"),
    [
        (NEW, signed_path(token(), SEGMENT), "127.0.0.1", T0, Allowed(SEGMENT)),
        (NEW, signed_path(token(), TITLE + "master.m3u8"), "", T0, Allowed(TITLE + "master.m3u8")),
        # Rotation: the old key still verifies while both are configured; the new one signs.
        (BOTH, signed_path(token(OLD), SEGMENT), "", T0, Allowed(SEGMENT)),
        (BOTH, signed_path(token(BOTH), SEGMENT), "", T0, Allowed(SEGMENT)),
        (NEW, signed_path(token(OLD), SEGMENT), "", T0, Refused(Refusal.BAD_SIGNATURE)),
        (NEW, SEGMENT, "", T0, Refused(Refusal.MISSING)),
        (NEW, "/t/show-abc123/master.m3u8", "", T0, Refused(Refusal.MISSING)),  # the fleet's alias
        (NEW, signed_path(token(expires=T0), SEGMENT), "", T0, Refused(Refusal.EXPIRED)),
        (NEW, signed_path(token(expires=T0 + 60), SEGMENT), "", T0 + 59.9, Allowed(SEGMENT)),
        (
            NEW,
            signed_path(token(), "/titles/other-title/360p/seg_00001.m4s"),
            "",
            T0,
            Refused(Refusal.WRONG_PATH),
        ),
        # A title's prefix ends with "/": show-abc123 does not open show-abc1234.
        (NEW, signed_path(token(), "/titles/show-abc1234/master.m3u8"), "", T0, Refused(Refusal.WRONG_PATH)),
        (NEW, signed_path(token(prefix=TITLE + "360p/"), SEGMENT), "", T0, Allowed(SEGMENT)),
        (NEW, signed_path(token(prefix=TITLE + "720p/"), SEGMENT), "", T0, Refused(Refusal.WRONG_PATH)),
        (NEW, signed_path(token(client="198.51.100.7"), SEGMENT), "198.51.100.7", T0, Allowed(SEGMENT)),
        (
            NEW,
            signed_path(token(client="198.51.100.7"), SEGMENT),
            "198.51.100.8",
            T0,
            Refused(Refusal.WRONG_CLIENT),
        ),
        # Tampering with any signed field breaks the signature.
        (
            NEW,
            signed_path(tampered(token(), 1, str(int(T0) + 10**6)), SEGMENT),
            "",
            T0,
            Refused(Refusal.BAD_SIGNATURE),
        ),
        (
            NEW,
            signed_path(tampered(token(), 2, token(prefix="/titles/").split(".")[2]), SEGMENT),
            "",
            T0,
            Refused(Refusal.BAD_SIGNATURE),
        ),
        (
            NEW,
            signed_path(tampered(token(client="198.51.100.7"), 3, ""), SEGMENT),
            "",
            T0,
            Refused(Refusal.BAD_SIGNATURE),
        ),
        (NEW, signed_path(tampered(token(), 4, "A" * 43), SEGMENT), "", T0, Refused(Refusal.BAD_SIGNATURE)),
        (NEW, "/t/S1.abc/titles/show-abc123/master.m3u8", "", T0, Refused(Refusal.MALFORMED)),
        (NEW, "/t/S1.x.y.z.w/titles/show-abc123/master.m3u8", "", T0, Refused(Refusal.MALFORMED)),
        (
            NEW,
            "/t/S1." + "9" * 13 + ".eA..w/titles/show-abc123/master.m3u8",
            "",
            T0,
            Refused(Refusal.MALFORMED),
        ),
        (NEW, "/t/S2.1.eA..w/titles/show-abc123/master.m3u8", "", T0, Refused(Refusal.MISSING)),
    ],
)
def test_check(keys: SigningKeys, path: str, client: str, now: float, expected: object) -> None:
    assert TokenChecker(keys).check(path, client, now) == expected


def test_with_signing_off_nothing_is_refused_and_a_token_is_dropped() -> None:
    off = TokenChecker(None)
    assert off.check(SEGMENT, "", T0) == Allowed(SEGMENT)
    assert off.check(signed_path(token(), SEGMENT), "", T0) == Allowed(SEGMENT)
    assert off.check("/t/show-abc123/master.m3u8", "", T0) == Allowed("/t/show-abc123/master.m3u8")


def test_tokens_are_path_components_that_no_title_id_can_be() -> None:
    made = token(client="2001:db8::1")
    assert "/" not in made and not is_title_id(made)
    assert split_signed(signed_path(made, SEGMENT)) == (made, SEGMENT)
    assert split_signed("/t/show-abc123/master.m3u8") is None
    assert split_signed(SEGMENT) is None
    assert verify_token(NEW, made) == Grant(TITLE, int(T0 + 60), "2001:db8::1")


def test_a_remembered_token_or_path_is_still_judged_at_each_time_and_client() -> None:
    checker = TokenChecker(NEW)
    path = signed_path(token(), SEGMENT)
    assert checker.check(path, "", T0) == Allowed(SEGMENT)
    assert checker.check(path, "", T0 + 60) == Refused(Refusal.EXPIRED)
    with pytest.raises(Forbidden, match="expired") as raised:
        checker.allowed_path(path, "", T0 + 60)
    assert raised.value.status == 403
    assert checker.allowed_path(path, "", T0) == SEGMENT
    bound = signed_path(token(client="198.51.100.7"), SEGMENT)
    for _ in range(2):  # found, then remembered: the client is checked each time
        assert checker.check(bound, "198.51.100.7", T0) == Allowed(SEGMENT)
        assert checker.check(bound, "198.51.100.8", T0) == Refused(Refusal.WRONG_CLIENT)


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        (["short"], "at least 16 bytes"),
        (["a" * 16, "b" * 16, "c" * 16], "one or two signing keys"),
    ],
)
def test_bad_keys(texts: list[str], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        SigningKeys.from_texts(texts)


def test_keys_from_a_file_skip_blank_lines_and_comments() -> None:
    assert SigningKeys.from_texts(["# rotated 2026-11", "", " " + "a" * 16 + " ", "b" * 16]) == SigningKeys(
        (b"a" * 16, b"b" * 16)
    )
    assert SigningKeys.from_texts(["", "# none"]) is None
    with pytest.raises(InvalidInput, match="under /titles/"):
        make_token(NEW, Grant("/admin/", int(T0)))
