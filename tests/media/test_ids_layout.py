from pathlib import Path

import pytest

from media.errors import InvalidInput, NotFound
from media.ids import is_title_id, new_title_id, slugify, validate_title_id
from media.layout import Library, is_safe_component, safe_join


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
