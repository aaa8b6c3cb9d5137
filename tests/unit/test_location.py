"""destination/location.py: one open_archive for the four kinds of location (a local zip, a local
….zip.age, a zip on S3, a ….zip.age on S3), each yielding a seekable plaintext zip and its label;
an encrypted name without an identity is refused before anything is read."""

import hashlib
import io
import zipfile

import pytest
from botocore.exceptions import ClientError
from pyrage import x25519

from supabase_backup.archive import encryption
from supabase_backup.destination.location import archive_digest, open_archive
from supabase_backup.errors import ArchiveNotFound, ConfigurationError

MEMBERS = {"db/backup.sql": b"CREATE TABLE t();\n" * 2000, "storage/b/a.txt": b"hello"}


class WholeAndRangedS3:
    """head_object with metadata, and get_object whole or by Range: what open_archive calls."""

    def __init__(self, objects: dict[str, bytes], metadata: dict | None = None) -> None:
        self.objects, self.metadata = objects, metadata or {}
        self.calls: list[str] = []

    def head_object(self, Bucket, Key):
        self.calls.append("head")
        if Key not in self.objects:
            raise ClientError({"Error": {"Code": "404"}}, "HeadObject")
        return {"ContentLength": len(self.objects[Key]), "Metadata": self.metadata}

    def get_object(self, Bucket, Key, Range=None):
        data = self.objects[Key]
        if Range is None:
            self.calls.append("get whole")
            return {"Body": io.BytesIO(data)}
        self.calls.append("get range")
        start, end = (int(number) for number in Range.removeprefix("bytes=").split("-"))
        return {"Body": io.BytesIO(data[start:end + 1])}


@pytest.fixture
def archive_bytes():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in MEMBERS.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture
def identity(tmp_path):
    key = x25519.Identity.generate()
    path = tmp_path / "identity.txt"
    path.write_text(f"# public key: {key.to_public()}\n{key}\n")
    return str(key.to_public()), str(path)


def encrypt(tmp_path, data: bytes, recipient: str) -> bytes:
    plaintext, ciphertext = tmp_path / "plain.zip", tmp_path / "cipher.zip.age"
    plaintext.write_bytes(data)
    encryption.encrypt_file(plaintext, ciphertext, (recipient,))
    return ciphertext.read_bytes()


def members_of(archive_file) -> dict[str, bytes]:
    with zipfile.ZipFile(archive_file) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_a_local_zip_opens_as_itself(tmp_path, archive_bytes):
    path = tmp_path / "backup-2026-12-01-03-00-UTC.zip"
    path.write_bytes(archive_bytes)
    with open_archive(str(path)) as (archive_file, label):
        assert label == str(path)
        assert members_of(archive_file) == MEMBERS
        assert archive_digest(archive_file) == {
            "bytes": len(archive_bytes), "sha256": hashlib.sha256(archive_bytes).hexdigest()}


def test_a_local_encrypted_zip_opens_decrypted_and_leaves_no_plaintext(tmp_path, archive_bytes,
                                                                      identity, monkeypatch):
    recipient, identity_file = identity
    path = tmp_path / "backup-2026-12-01-03-00-UTC.zip.age"
    path.write_bytes(encrypt(tmp_path, archive_bytes, recipient))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))
    with open_archive(str(path), identity_file) as (archive_file, label):
        assert label == f"{path} (decrypted)"
        assert members_of(archive_file) == MEMBERS
        assert archive_digest(archive_file)["sha256"] == hashlib.sha256(archive_bytes).hexdigest()
        assert len(list(scratch.iterdir())) == 1  # the plaintext, on disk while it is open
    assert list(scratch.iterdir()) == []


def test_a_zip_on_s3_is_read_in_place_by_ranges(archive_bytes):
    s3 = WholeAndRangedS3({"k/a.zip": archive_bytes})
    with open_archive("s3://bk/k/a.zip", s3_client=s3) as (archive_file, label):
        assert label == "s3://bk/k/a.zip"
        assert members_of(archive_file) == MEMBERS
        digest = archive_digest(archive_file)
    assert (digest["bytes"], digest["sha256"]) == (len(archive_bytes),
                                                   hashlib.sha256(archive_bytes).hexdigest())
    assert digest["bytes_fetched"] >= len(archive_bytes)
    assert "get whole" not in s3.calls


def test_an_encrypted_zip_on_s3_is_streamed_through_the_decryptor(tmp_path, archive_bytes,
                                                                  identity):
    recipient, identity_file = identity
    s3 = WholeAndRangedS3({"k/a.zip.age": encrypt(tmp_path, archive_bytes, recipient)},
                          {encryption.RECIPIENTS_METADATA_KEY: recipient})
    with open_archive("s3://bk/k/a.zip.age", identity_file, s3_client=s3) as (archive_file, label):
        assert label == "s3://bk/k/a.zip.age (decrypted)"
        assert members_of(archive_file) == MEMBERS
    assert s3.calls == ["head", "get whole"]


@pytest.mark.parametrize("location", ["/nowhere/backup.zip.age", "s3://bk/k/a.zip.age"])
def test_an_encrypted_name_without_an_identity_is_refused_before_anything_is_read(location):
    s3 = WholeAndRangedS3({})
    with pytest.raises(ConfigurationError, match="pass --identity FILE"):
        with open_archive(location, s3_client=s3):
            pass
    assert s3.calls == []


@pytest.mark.parametrize("identity_file", [None, "identity.txt"])
def test_a_location_that_is_not_there_is_archive_not_found(tmp_path, identity_file):
    s3 = WholeAndRangedS3({})
    for location in (str(tmp_path / "nope.zip"), "s3://bk/nope.zip"):
        with pytest.raises(ArchiveNotFound):
            with open_archive(location, identity_file and str(tmp_path / identity_file),
                              s3_client=s3):
                pass
