from pathlib import Path

import pytest

from media.errors import InvalidInput, NotFound
from media.ids import is_title_id, new_title_id, slugify, validate_title_id
from media.layout import (
    Library,
    delivery_path,
    is_delivery_path,
    is_safe_component,
    parse_delivery_path,
    safe_join,
    validate_delivery_parts,
    validate_delivery_path,
)


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("abc", True),
        ("a-b", True),
        ("0ab", True),
        ("demo", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("ab", False),
        ("-ab", False),
        ("Abc", False),
        ("ab_c", False),
        ("ab/c", False),
        ("ab.c", False),
        ("../etc", False),
        ("abc\n", False),
        ("", False),
    ],
)
def test_title_id_rule(text: str, valid: bool) -> None:
    assert is_title_id(text) is valid


def test_validate_title_id_raises_a_400() -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_title_id("../x")
    assert caught.value.status == 400
    assert "invalid title id" in str(caught.value)


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Big Buck Bunny", "big-buck-bunny"),
        ("  Ünïcödé — title!  ", "unicode-title"),
        ("日本語", ""),
        ("a" * 200, "a" * 57),
    ],
)
def test_slugify(name: str, slug: str) -> None:
    assert slugify(name) == slug


def test_new_title_id_is_valid_and_fresh() -> None:
    assert new_title_id("Big Buck Bunny", token="k3x9q2") == "big-buck-bunny-k3x9q2"
    assert new_title_id("日本語", token="k3x9q2") == "title-k3x9q2"
    ids = {new_title_id("same") for _ in range(50)}
    assert len(ids) == 50
    assert all(is_title_id(i) for i in ids)


@pytest.mark.parametrize("component", ["360p", "seg_00001.m4s", "init.mp4", "master.m3u8", "a-b.c_d"])
def test_safe_components(component: str) -> None:
    assert is_safe_component(component)


@pytest.mark.parametrize(
    "component", ["..", ".", "", ".hidden", "a/b", "a\\b", "a..b", "%2e%2e", "a\x00b", "/etc", "x" * 200]
)
def test_unsafe_components(component: str) -> None:
    assert not is_safe_component(component)


def test_safe_join_never_leaves_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    assert safe_join(root, "a", "b.txt") == root / "a" / "b.txt"
    with pytest.raises(InvalidInput):
        safe_join(root, "..", "etc")
    # A symlink planted inside the library must not lead outside it.
    (root / "escape").symlink_to(tmp_path)
    with pytest.raises(NotFound):
        safe_join(root, "escape", "secret")


def test_library_paths(tmp_path: Path) -> None:
    library = Library(tmp_path)
    library.ensure_dirs()
    assert library.title_dir("abc-123") == tmp_path / "titles" / "abc-123"
    assert library.source_path("abc-123") == tmp_path / "sources" / "abc-123" / "source"
    assert (
        library.title_file("abc-123", "360p", "seg_00000.m4s")
        == tmp_path / "titles/abc-123/360p/seg_00000.m4s"
    )
    for directory in ("titles", "staging", "sources", "uploads"):
        assert (tmp_path / directory).is_dir()
    with pytest.raises(InvalidInput):
        library.title_dir("../../etc")
    with pytest.raises(InvalidInput):
        library.title_file("abc-123", "..", "..", "admin.token")


@pytest.mark.parametrize(
    ("path", "parts"),
    [
        ("/titles/abc/master.m3u8", ("abc", ("master.m3u8",))),
        ("/titles/my-show-x1y2z3/720p/seg_00001.m4s", ("my-show-x1y2z3", ("720p", "seg_00001.m4s"))),
        ("/titles/abc/audio-en/init.mp4", ("abc", ("audio-en", "init.mp4"))),
        ("/titles/abc/720p/iframes.m3u8", ("abc", ("720p", "iframes.m3u8"))),
        ("/titles/" + "a" * 64 + "/master.m3u8", ("a" * 64, ("master.m3u8",))),
    ],
)
def test_delivery_paths_accepted(path: str, parts: tuple[str, tuple[str, ...]]) -> None:
    checked = validate_delivery_path(path)
    assert (checked.title_id, checked.components) == parts and checked.path == path
    assert validate_delivery_parts(parts[0], *parts[1]) == checked and is_delivery_path(path)


@pytest.mark.parametrize(
    "path",
    [
        "",
        "/",
        "/titles",
        "/titles/",
        "/titles/abc",
        "/titles/abc/",  # no file
        "titles/abc/master.m3u8",  # not absolute
        "/title/abc/master.m3u8",
        "/titles/ab/master.m3u8",  # id too short
        "/titles/" + "a" * 65 + "/master.m3u8",  # id too long
        "/titles/ABC/master.m3u8",  # ids are lower case
        "/titles/-abc/master.m3u8",
        "/titles/abc/../master.m3u8",
        "/titles/abc/720p/../../x",
        "/titles/abc/720p/..m4s",
        "/titles/abc/.hidden",
        "/titles/abc/720p/seg 1.m4s",
        "/titles/abc/720p/seg%2F1.m4s",
        "/titles/abc//seg_1.m4s",  # empty rendition
        "/titles/abc/720p/extra/seg_1.m4s",  # too deep
        "/titles/abc/720p/seg_1.m4s/",
        "/titles/abc/720p/seg_1.m4s\x00",
        "/titles/abc/720p/" + "s" * 129,
    ],
)
def test_delivery_paths_refused(path: str) -> None:
    assert parse_delivery_path(path) is None and not is_delivery_path(path)
    with pytest.raises(InvalidInput, match=r"^invalid path$"):
        validate_delivery_path(path)


@pytest.mark.parametrize(
    ("title_id", "components"),
    [("abc", ()), ("abc", ("a", "b", "c")), ("a/b", ("master.m3u8",)), ("abc", ("..",)), ("abc", ("",))],
)
def test_delivery_parts_refused(title_id: str, components: tuple[str, ...]) -> None:
    assert delivery_path(title_id, *components) is None
    with pytest.raises(InvalidInput):
        validate_delivery_parts(title_id, *components)
