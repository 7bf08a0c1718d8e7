"""The `raw` output: a little-endian binary container of the sections, with a CRC-checked header.

Layout (docs/model-format.md): a 32-byte fixed header, a section table, the TLV-encoded info
block, then the stored sections (cmd, weight, ops, debug), each starting on a 16-byte
boundary. data and tmp are zero-initialised RAM: the table gives their sizes, the file holds
no bytes for them. debug (names, attrs) is for the decoder and reports; a runtime skips it.
"""
from __future__ import annotations

import struct
import zlib

from gxnpuc.backend import tlv
from gxnpuc.backend.plan import align
from gxnpuc.backend.sections import FORMAT_VERSION, Sections

MAGIC = b"GXNPUMDL"
HEADER = struct.Struct("<8sIIIIII")  # magic, version, header_size, crc32, n_sections, info off, info size
ENTRY = struct.Struct("<4sIII")  # tag, offset, size, flags (bit 0: bytes stored in the file)
TAGS = (b"CMD\0", b"WGHT", b"OPS\0", b"DATA", b"TMP\0", b"DBG\0")
STORED = (0, 1, 2, 5)  # the sections whose bytes the file holds, in file order
CRC_AT = 16  # offset of the crc32 field
ALIGN = 16


def pack(sec: Sections) -> bytearray:
    """The whole file (the CRC covers every byte, with its own field as zero), assembled in
    one buffer of its final size."""
    info = tlv.encode(sec.info)
    table_end = HEADER.size + ENTRY.size * len(TAGS)
    header_size = align(table_end + len(info), ALIGN)
    stored = [sec.cmd, sec.weight, sec.ops, sec.debug]
    entries, offsets, off = {}, [], header_size
    for k, blob in zip(STORED, stored):
        entries[k] = ENTRY.pack(TAGS[k], off, len(blob), 1)
        offsets.append(off)
        off += align(len(blob), ALIGN)
    entries[3], entries[4] = ENTRY.pack(TAGS[3], 0, sec.data_size, 0), ENTRY.pack(TAGS[4], 0, sec.tmp_size, 0)
    head = HEADER.pack(MAGIC, FORMAT_VERSION, header_size, 0, len(TAGS), table_end, len(info))
    pre = head + b"".join(entries[k] for k in range(len(TAGS))) + info
    out = bytearray(off)  # zero-filled: the padding after the header and after each section
    out[:len(pre)] = pre
    for at, blob in zip(offsets, stored):
        out[at:at + len(blob)] = blob
    struct.pack_into("<I", out, CRC_AT, zlib.crc32(out))
    return out


def is_raw(head: bytes) -> bool:
    return head[:len(MAGIC)] == MAGIC


def unpack(blob: bytes) -> Sections:
    """Sections from a raw file; ValueError with the reason when it is not a valid one."""
    if len(blob) < HEADER.size or not is_raw(blob):
        raise ValueError("no gxnpuc raw header")
    _, version, header_size, crc, n, info_off, info_size = HEADER.unpack_from(blob)
    if version != FORMAT_VERSION:
        raise ValueError(f"container version {version} (this gxnpuc reads {FORMAT_VERSION}; "
                         "recompile the model with this gxnpuc)")
    view = memoryview(blob)
    check = zlib.crc32(view[CRC_AT + 4:], zlib.crc32(b"\0\0\0\0", zlib.crc32(view[:CRC_AT])))
    if check != crc:  # the CRC of the file with its own field as zero, without copying it
        raise ValueError("checksum mismatch: the file is truncated or corrupt")
    sections = {}
    if n != len(TAGS) or HEADER.size + n * ENTRY.size > len(blob):
        raise ValueError(f"{n} sections (a version {FORMAT_VERSION} file has {len(TAGS)})")
    for k in range(n):
        tag, off, size, flags = ENTRY.unpack_from(blob, HEADER.size + k * ENTRY.size)
        if flags & 1 and off + size > len(blob):
            raise ValueError(f"section {tag!r} lies outside the file")
        sections[tag] = blob[off:off + size] if flags & 1 else size
    info = tlv.decode(blob[info_off:info_off + info_size])
    return Sections(sections[TAGS[0]], sections[TAGS[1]], sections[TAGS[2]],
                    int(sections[TAGS[3]]), int(sections[TAGS[4]]), info, debug=sections[TAGS[5]])
