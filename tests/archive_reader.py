"""The tests' own reader of a backup zip, written from FORMAT.md and independent of the library's
archive and verify modules, so a mistake in one is caught by the other."""

import hashlib
import json
import zipfile
from urllib.parse import unquote


def read_archive(path):
    """{"manifest": dict, "members": {name: (size, sha256)}, "objects": {(bucket, key): sha256}}."""
    members = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            digest = hashlib.sha256()
            size = 0
            with archive.open(info) as source:
                while chunk := source.read(1 << 20):
                    digest.update(chunk)
                    size += len(chunk)
            members[info.filename] = (size, digest.hexdigest())
        manifest = json.loads(archive.read("manifest.json"))
    objects = {}
    for name, (size, sha256) in members.items():
        if name.startswith("storage/"):
            _, bucket, encoded_key = name.split("/", 2)
            if encoded_key.endswith("/%00"):  # format 2: a name that is also a folder
                encoded_key = encoded_key[:-len("/%00")]
            objects[(unquote(bucket), unquote(encoded_key))] = (size, sha256)
    return {"manifest": manifest, "members": members, "objects": objects}


def read_member(path, name):
    with zipfile.ZipFile(path) as archive:
        return archive.read(name)
