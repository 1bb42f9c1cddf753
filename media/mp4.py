"""Just enough ISO-BMFF (ISO/IEC 14496-12) reading for packaging: codec strings and I-frame byte ranges.

Pure functions over ``bytes``. Only box headers and the few fields below are read; anything malformed
raises ``DamagedMedia`` rather than an ``IndexError`` or ``struct.error``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from media.errors import DamagedMedia

_CONTAINERS = (b"moov", b"trak", b"mdia", b"minf", b"stbl", b"moof", b"traf")
# ISO/IEC 14496-12 12.1.3 / 12.2.3: fixed fields of visual and audio sample entries before child boxes.
_VISUAL_ENTRY_FIELDS = 78
_AUDIO_ENTRY_FIELDS = 28


@dataclass(frozen=True)
class Box:
    kind: bytes
    start: int  # offset of the box header
    body: int  # offset of the box payload
    end: int


def iter_boxes(data: bytes, start: int = 0, end: int | None = None) -> Iterator[Box]:
    end = len(data) if end is None else end
    offset = start
    while offset + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, offset)
        header = 8
        if size == 1:
            if offset + 16 > end:
                raise DamagedMedia("MP4 box header cut short")
            (size,) = struct.unpack_from(">Q", data, offset + 8)
            header = 16
        elif size == 0:
            size = end - offset
        if size < header or offset + size > end:
            raise DamagedMedia(f"MP4 box {kind!r} at {offset} overruns its container")
        yield Box(kind, offset, offset + header, offset + size)
        offset += size


def find_box(data: bytes, path: list[bytes], start: int = 0, end: int | None = None) -> Box | None:
    """The first box along ``path`` (e.g. ``[b"moov", b"trak"]``), descending through containers."""
    for box in iter_boxes(data, start, end):
        if box.kind == path[0]:
            if len(path) == 1:
                return box
            if box.kind in _CONTAINERS:
                found = find_box(data, path[1:], box.body, box.end)
                if found is not None:
                    return found
    return None


def _sample_entries(init: bytes) -> list[Box]:
    stsd = find_box(init, [b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd"])
    if stsd is None:
        raise DamagedMedia("MP4 init segment has no sample description (stsd)")
    # FullBox version/flags (4) + entry_count (4)
    return list(iter_boxes(init, stsd.body + 8, stsd.end))


def avc_codec_string(init: bytes) -> str:
    """RFC 6381 codec string of the first H.264 track, e.g. ``avc1.64001f``, from its avcC record."""
    for entry in _sample_entries(init):
        if entry.kind in (b"avc1", b"avc3"):
            avcc = find_box(init, [b"avcC"], entry.body + _VISUAL_ENTRY_FIELDS, entry.end)
            if avcc is None or avcc.end - avcc.body < 4:
                raise DamagedMedia("H.264 sample entry without an avcC record")
            profile, compatibility, level = init[avcc.body + 1 : avcc.body + 4]
            return f"{entry.kind.decode()}.{profile:02x}{compatibility:02x}{level:02x}"
    raise DamagedMedia("no H.264 track in the init segment")


def _descriptor(data: bytes, offset: int) -> tuple[int, int, int]:
    """(tag, payload offset, payload end) of an MPEG-4 descriptor (ISO/IEC 14496-1 8.3.3)."""
    tag = data[offset]
    offset += 1
    length = 0
    for _ in range(4):
        byte = data[offset]
        offset += 1
        length = (length << 7) | (byte & 0x7F)
        if not byte & 0x80:
            break
    return tag, offset, offset + length


def aac_codec_string(init: bytes) -> str:
    """RFC 6381 codec string of the first AAC track, e.g. ``mp4a.40.2`` (AAC-LC), from its esds."""
    for entry in _sample_entries(init):
        if entry.kind != b"mp4a":
            continue
        esds = find_box(init, [b"esds"], entry.body + _AUDIO_ENTRY_FIELDS, entry.end)
        if esds is None:
            raise DamagedMedia("AAC sample entry without an esds box")
        try:
            tag, offset, _ = _descriptor(init, esds.body + 4)
            if tag != 0x03:
                raise DamagedMedia("esds does not start with an ES descriptor")
            flags = init[offset + 2]
            offset += 3
            offset += 2 if flags & 0x80 else 0  # streamDependenceFlag
            offset += 1 + init[offset] if flags & 0x40 else 0  # URL_Flag
            offset += 2 if flags & 0x20 else 0  # OCRstreamFlag
            tag, offset, _ = _descriptor(init, offset)
            if tag != 0x04:
                raise DamagedMedia("esds has no decoder config descriptor")
            object_type_indication = init[offset]
            tag, offset, _ = _descriptor(init, offset + 13)
            if tag != 0x05:
                return f"mp4a.{object_type_indication:02x}"
            audio_object_type = init[offset] >> 3
            if audio_object_type == 31:  # escape value: 6 more bits follow (ISO/IEC 14496-3 1.6.2.1)
                audio_object_type = 32 + (((init[offset] & 0x07) << 3) | (init[offset + 1] >> 5))
        except IndexError:
            raise DamagedMedia("esds box cut short") from None
        return f"mp4a.{object_type_indication:02x}.{audio_object_type}"
    raise DamagedMedia("no AAC track in the init segment")


@dataclass(frozen=True)
class FirstSample:
    end: int  # bytes from the start of the segment through the end of the first sample's data
    is_sync: bool


def first_sample(segment: bytes) -> FirstSample:
    """Where the first sample of the first fragment ends, and whether it is a sync sample (an IDR).

    The I-frame playlist's byte range for a segment is ``[0, end)``: styp, sidx, moof, the mdat header and
    the key frame itself (RFC 8216 4.3.3.6; Apple HLS authoring spec 6.x, I-frame playlists).
    """
    moof = find_box(segment, [b"moof"])
    if moof is None:
        raise DamagedMedia("media segment has no movie fragment (moof)")
    tfhd = find_box(segment, [b"traf", b"tfhd"], moof.body, moof.end)
    trun = find_box(segment, [b"traf", b"trun"], moof.body, moof.end)
    if tfhd is None or trun is None:
        raise DamagedMedia("movie fragment without tfhd/trun")
    try:
        tfhd_flags = int.from_bytes(segment[tfhd.body + 1 : tfhd.body + 4], "big")
        cursor = tfhd.body + 8  # version/flags, track_ID
        base_offset = None
        if tfhd_flags & 0x000001:
            (base_offset,) = struct.unpack_from(">Q", segment, cursor)
            cursor += 8
        cursor += 4 if tfhd_flags & 0x000002 else 0
        cursor += 4 if tfhd_flags & 0x000008 else 0
        default_size = None
        if tfhd_flags & 0x000010:
            (default_size,) = struct.unpack_from(">I", segment, cursor)
            cursor += 4
        default_flags = 0
        if tfhd_flags & 0x000020:
            (default_flags,) = struct.unpack_from(">I", segment, cursor)

        trun_flags = int.from_bytes(segment[trun.body + 1 : trun.body + 4], "big")
        (sample_count,) = struct.unpack_from(">I", segment, trun.body + 4)
        if sample_count == 0:
            raise DamagedMedia("movie fragment with no samples")
        cursor = trun.body + 8
        data_offset = None
        if trun_flags & 0x000001:
            (data_offset,) = struct.unpack_from(">i", segment, cursor)
            cursor += 4
        first_flags = None
        if trun_flags & 0x000004:
            (first_flags,) = struct.unpack_from(">I", segment, cursor)
            cursor += 4
        cursor += 4 if trun_flags & 0x000100 else 0
        size = default_size
        if trun_flags & 0x000200:
            (size,) = struct.unpack_from(">I", segment, cursor)
            cursor += 4
        if first_flags is None and trun_flags & 0x000400:
            (first_flags,) = struct.unpack_from(">I", segment, cursor)
    except struct.error:
        raise DamagedMedia("movie fragment header cut short") from None
    if size is None:
        raise DamagedMedia("movie fragment gives no sample size")
    if data_offset is not None:
        start = (base_offset if base_offset is not None else moof.start) + data_offset
    else:
        mdat = find_box(segment, [b"mdat"], moof.end)
        if mdat is None:
            raise DamagedMedia("media segment has no mdat after its moof")
        start = mdat.body
    end = start + size
    if end > len(segment):
        raise DamagedMedia("first sample runs past the end of the segment")
    flags = default_flags if first_flags is None else first_flags
    return FirstSample(end=end, is_sync=not flags & 0x00010000)  # sample_is_non_sync_sample


@dataclass(frozen=True)
class TrackSetup:
    """What fragments written by different muxers must agree on to play as one track with one init
    segment: the timescale their decode times count in, the sample description (codec, its configuration
    record such as the SPS/PPS of avcC, picture size) and the edit list (where presentation starts)."""

    timescale: int
    sample_description: bytes
    edit_list: bytes  # empty without one


def track_setup(init: bytes) -> TrackSetup:
    """The ``TrackSetup`` of the first track of an init segment (ISO/IEC 14496-12 8.4.2, 8.5.2, 8.6.6)."""
    mdhd = find_box(init, [b"moov", b"trak", b"mdia", b"mdhd"])
    stsd = find_box(init, [b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd"])
    if mdhd is None or stsd is None:
        raise DamagedMedia("MP4 init segment without a media header (mdhd) or sample description (stsd)")
    # FullBox version/flags, then creation and modification times: 4 bytes each in version 0, 8 in 1.
    offset = mdhd.body + 4 + (16 if init[mdhd.body] == 1 else 8)
    if offset + 4 > mdhd.end:
        raise DamagedMedia("MP4 media header cut short")
    (timescale,) = struct.unpack_from(">I", init, offset)
    edts = find_box(init, [b"moov", b"trak", b"edts"])
    edit_list = b"" if edts is None else init[edts.body : edts.end]
    return TrackSetup(timescale=timescale, sample_description=init[stsd.body : stsd.end], edit_list=edit_list)
