"""CMCD (CTA-5004) encoding, as tables."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from loadtest import cmcd


@pytest.mark.parametrize(
    ("data", "encoded"),
    [
        ({}, ""),
        ({"sid": "abc", "br": 3200, "ot": "v"}, 'br=3200,ot=v,sid="abc"'),
        ({"su": True, "bs": False, "sf": "h"}, "sf=h,su"),
        ({"nor": "", "d": 4004}, "d=4004"),
        ({"cid": 'a "b" \\c'}, r'cid="a \"b\" \\c"'),
        ({"pr": 1.5, "mtp": 25400.0}, "mtp=25400,pr=1.5"),
    ],
)
def test_encode(data: dict[str, cmcd.Value], encoded: str) -> None:
    assert cmcd.encode(data) == encoded


def test_keys_go_to_their_headers() -> None:
    data = cmcd.request_keys(
        cmcd.Session(sid="s1", speed=2.0),
        object_type="v",
        buffer_ms=12_345,
        duration_ms=2_000,
        bitrate_bps=513_210,
        top_bitrate_bps=900_000,
        throughput_bps=25_432_000,
        next_object="seg_00003.m4s",
        startup=True,
        starved=True,
    )
    assert cmcd.headers(data) == {
        "CMCD-Object": "br=513,d=2000,ot=v,tb=900",
        "CMCD-Request": 'bl=12300,mtp=25400,nor="seg_00003.m4s",su',
        "CMCD-Session": 'pr=2,sf=h,sid="s1",st=v',
        "CMCD-Status": "bs",
    }


def test_query_argument_round_trips_and_nor_is_url_encoded() -> None:
    data = cmcd.request_keys(cmcd.Session(sid="s1"), object_type="a", next_object="../b c.m4s")
    url = cmcd.with_query("http://127.0.0.1/t/a.m4s?x=1", data)
    assert url.startswith("http://127.0.0.1/t/a.m4s?x=1&CMCD=")
    value = parse_qs(urlsplit(url).query)["CMCD"][0]
    assert value == 'nor="..%2Fb%20c.m4s",ot=a,sf=h,sid="s1",st=v'
    assert cmcd.with_query("http://h/x", {}) == "http://h/x"
