import pytest

from media.errors import InvalidInput
from media.ladder import APPLE_H264_LADDER, DEFAULT_LADDER, Rung, choose_ladder, fit_in_box, parse_ladder


def sizes(
    width: int, height: int, rungs: tuple[Rung, ...] = DEFAULT_LADDER
) -> list[tuple[str, int, int, int]]:
    return [(r.name, r.width, r.height, r.bitrate) for r in choose_ladder(width, height, rungs)]


def test_full_hd_gets_the_whole_default_ladder() -> None:
    assert sizes(1920, 1080) == [
        ("234p", 416, 234, 145_000),
        ("360p", 640, 360, 365_000),
        ("432p", 768, 432, 730_000),
        ("540p", 960, 540, 2_000_000),
        ("720p", 1280, 720, 3_000_000),
        ("1080p", 1920, 1080, 6_000_000),
    ]


def test_never_upscales() -> None:
    assert [name for name, *_ in sizes(640, 360)] == ["234p", "360p"]
    assert all(w <= 640 and h <= 360 for _, w, h, _ in sizes(640, 360))


def test_portrait_keeps_its_aspect_and_turns_the_boxes() -> None:
    assert sizes(1080, 1920)[:2] == [("234p", 234, 416, 145_000), ("360p", 360, 640, 365_000)]
    assert sizes(360, 640) == [("234p", 234, 416, 145_000), ("360p", 360, 640, 365_000)]


@pytest.mark.parametrize(
    ("width", "height"),
    [(854, 481), (1920, 804), (720, 576), (333, 333), (4096, 2160), (1081, 1921), (161, 121)],
)
def test_every_rendition_is_even_keeps_aspect_and_fits_the_source(width: int, height: int) -> None:
    renditions = choose_ladder(width, height)
    assert renditions, "at least one rung for any source"
    for r in renditions:
        assert r.width % 2 == 0 and r.height % 2 == 0
        assert r.width <= width and r.height <= height
        # Aspect within one pixel of rounding on the shorter side.
        assert abs(r.width / r.height - width / height) < 2.5 / min(r.width, r.height)
        assert r.maxrate > r.bitrate and r.bufsize > r.bitrate
    assert len({r.name for r in renditions}) == len(renditions)


def test_tiny_source_gets_one_rung_at_its_own_size() -> None:
    assert sizes(160, 120) == [("120p", 160, 120, 72_000)]
    assert sizes(163, 121)[0][1:3] == (162, 120)


def test_rotated_display_size_is_what_counts() -> None:
    # Callers pass the display size (after rotation): 1920x1080 shot upright on a phone is 1080x1920.
    assert choose_ladder(1080, 1920)[0].height > choose_ladder(1080, 1920)[0].width


def test_wide_source_fits_the_box_width() -> None:
    assert fit_in_box(1920, 804, 1280, 720) == (1280, 536)
    assert fit_in_box(1920, 1080, 1280, 720) == (1280, 720)


def test_same_height_rungs_get_distinct_names() -> None:
    names = [name for name, *_ in sizes(1920, 1080, APPLE_H264_LADDER)]
    assert "720p-3000k" in names and "720p-4500k" in names
    assert len(set(names)) == len(names) == 9


def test_parse_ladder() -> None:
    assert parse_ladder("640x360@365k, 416x234@145k,1920x1080@7.8M") == (
        Rung(416, 234, 145_000),
        Rung(640, 360, 365_000),
        Rung(1920, 1080, 7_800_000),
    )
    assert parse_ladder("360x640@365000") == (Rung(640, 360, 365_000),)


@pytest.mark.parametrize("text", ["", "640x360", "640x361@365k", "640x360@1k", "big@1M", "8x8@100k", " , "])
def test_parse_ladder_rejects_bad_rungs(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_ladder(text)


def test_choose_ladder_rejects_nonsense() -> None:
    with pytest.raises(InvalidInput):
        choose_ladder(0, 100)
    with pytest.raises(InvalidInput):
        choose_ladder(100, 100, ())
