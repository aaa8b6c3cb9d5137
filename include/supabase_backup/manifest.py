"""``manifest.json``: what an archive holds, and the size and sha256 of every member.

The manifest is ordinary JSON (FORMAT.md shows it), laid out so it can also be read one member at a
time: every key but ``members`` comes first, then ``"members": [`` on a line of its own, one member
object per line, and ``]}`` on the last line. A backup of a million objects is then verified
without loading a million dicts.
"""

from __future__ import annotations

import json
from typing import IO, Iterable, Iterator

FORMAT_NAME = "supabase-backup"
FORMAT_VERSION = 1
MEMBERS_OPENING = '"members": ['
MEMBERS_CLOSING = "]}"


class ManifestFormatError(ValueError):
    pass


def write_manifest(output: IO[str], header: dict, members: Iterable[dict]) -> int:
    """Write the header keys, then the members one per line; returns the member count."""
    if "members" in header:
        raise ValueError("members are streamed separately")
    header = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **header}
    header_text = json.dumps(header, ensure_ascii=False, indent=1, sort_keys=False)
    output.write(header_text[:-1].rstrip() + ",\n" + MEMBERS_OPENING + "\n")
    count = 0
    for member in members:
        output.write(("," if count else "") + json.dumps(member, ensure_ascii=False) + "\n")
        count += 1
    output.write(MEMBERS_CLOSING + "\n")
    return count


def read_manifest_header(lines: Iterable[str]) -> tuple[dict, Iterator[str]]:
    """Parse the header (everything but members) and return an iterator over the rest."""
    iterator = iter(lines)
    header_lines = []
    for line in iterator:
        if line.rstrip("\r\n") == MEMBERS_OPENING:
            break
        header_lines.append(line)
    else:
        raise ManifestFormatError("manifest.json has no members list")
    text = "".join(header_lines).rstrip()
    if not text.endswith(","):
        raise ManifestFormatError("manifest.json header is not followed by members")
    header = json.loads(text[:-1] + "}")
    if header.get("format") != FORMAT_NAME:
        raise ManifestFormatError(f"not a {FORMAT_NAME} manifest (format={header.get('format')!r})")
    if header.get("format_version") != FORMAT_VERSION:
        raise ManifestFormatError(
            f"manifest format_version {header.get('format_version')!r} is not supported "
            f"(this tool reads {FORMAT_VERSION})"
        )
    return header, iterator


def iter_manifest_members(rest: Iterator[str]) -> Iterator[dict]:
    for line in rest:
        stripped = line.strip()
        if stripped == MEMBERS_CLOSING:
            return
        if stripped.startswith(","):
            stripped = stripped[1:]
        if stripped:
            yield json.loads(stripped)
    raise ManifestFormatError("manifest.json ends before its members list closes")


def read_manifest(lines: Iterable[str]) -> tuple[dict, Iterator[dict]]:
    header, rest = read_manifest_header(lines)
    return header, iter_manifest_members(rest)
