"""Client-side encryption with age: round trip, several recipients, wrong identity, tampering,
and the command line's --identity."""

import hashlib
import io
import zipfile

import pytest
from pyrage import x25519

from supabase_backup.archive import encryption
from supabase_backup import config
from supabase_backup.archive import manifest
from supabase_backup.cli import main
from supabase_backup.errors import ConfigurationError, DecryptionFailed, IdentityMismatch

MEMBERS = {"db/backup.sql": b"CREATE TABLE t();\n" * 5000, "storage/b/photo.jpg": bytes(range(256)) * 300}


def write_archive(path):
    listed = [{"path": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
              for name, data in MEMBERS.items()]
    text = io.StringIO()
    manifest.write_manifest(text, {"run": {"run_id": "run-enc"}}, listed)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", text.getvalue())
        for name, data in MEMBERS.items():
            archive.writestr(name, data)
    return path


@pytest.fixture
def keys(tmp_path):
    identities = [x25519.Identity.generate() for _ in range(3)]
    files = []
    for number, identity in enumerate(identities):
        path = tmp_path / f"identity-{number}.txt"
        path.write_text(f"# created: test\n# public key: {identity.to_public()}\n{identity}\n")
        files.append(str(path))
    return [str(identity.to_public()) for identity in identities], files


@pytest.fixture
def encrypted(tmp_path, keys):
    recipients, _ = keys
    plaintext = write_archive(tmp_path / "backup-2026-11-28-03-00-UTC.zip")
    target = tmp_path / "backup-2026-11-28-03-00-UTC.zip.age"
    result = encryption.encrypt_file(plaintext, target, tuple(recipients[:2]))
    assert result["bytes"] == target.stat().st_size
    assert result["sha256"] == hashlib.sha256(target.read_bytes()).hexdigest()
    return plaintext, target


def test_each_recipient_decrypts_the_same_archive(encrypted, keys, tmp_path):
    plaintext, target = encrypted
    _, identity_files = keys
    assert not target.read_bytes().startswith(b"PK")
    for identity_file in identity_files[:2]:
        with target.open("rb") as source:
            copy = encryption.decrypted_copy(source, str(tmp_path), identity_file, label="t")
        assert copy.read_bytes() == plaintext.read_bytes()
        copy.unlink()


def test_verify_with_identity_checks_the_manifest_after_decryption(encrypted, keys, capsys):
    _, target = encrypted
    assert main(["verify", str(target), "--identity", keys[1][1]]) == 0
    out = capsys.readouterr().out
    assert "(decrypted): 2 members" in out and "run run-enc" in out


def test_a_wrong_identity_is_refused_naming_the_remedy(encrypted, keys, capsys):
    _, target = encrypted
    assert main(["verify", str(target), "--identity", keys[1][2]]) == 7
    assert "no identity in" in capsys.readouterr().err
    with pytest.raises(IdentityMismatch), target.open("rb") as source:
        encryption.decrypt_stream(source, io.BytesIO(), keys[1][2], label="t")


def test_tampered_ciphertext_is_refused(encrypted, keys, tmp_path, capsys):
    _, target = encrypted
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    tampered = tmp_path / "tampered.zip.age"
    tampered.write_bytes(bytes(data))
    assert main(["verify", str(tampered), "--identity", keys[1][0]]) == 1
    assert "altered or truncated" in capsys.readouterr().err
    truncated = tmp_path / "truncated.zip.age"
    truncated.write_bytes(target.read_bytes()[:-100])
    with pytest.raises(DecryptionFailed), truncated.open("rb") as source:
        encryption.decrypt_stream(source, io.BytesIO(), keys[1][0], label="t")
    assert not list(tmp_path.glob("supabase-backup-decrypted-*"))


def test_an_encrypted_archive_needs_an_identity(encrypted, capsys):
    _, target = encrypted
    assert main(["verify", str(target)]) == 3
    assert "--identity" in capsys.readouterr().err


def test_recipients_are_checked_and_a_secret_key_is_never_echoed(keys):
    recipients, _ = keys
    assert config.parse_recipients(f" {recipients[0]} ,{recipients[1]},{recipients[0]}") == \
        (recipients[0], recipients[1])
    assert config.parse_recipients("") is None
    secret = str(x25519.Identity.generate())
    with pytest.raises(ConfigurationError, match="SECRET key") as error:
        config.parse_recipients(f"{recipients[0]},{secret}")
    assert secret not in str(error.value) and secret[15:] not in str(error.value)
    with pytest.raises(ConfigurationError, match="item 1"):
        config.parse_recipients("age1notakey")


def test_the_run_plan_carries_the_recipients(keys):
    from supabase_backup.config import BackupSettings, RunPlan

    recipients, _ = keys
    values = {"supabase_backup_s3_bucket": "b",
              "supabase_backup_age_recipients": ",".join(recipients[:2]),
              "supabase_backup_retention": '{"keep_daily": 7}'}
    settings = BackupSettings.from_variables(lambda name, default: values.get(name, default))
    plan = RunPlan.create(settings, run_id="r", trigger="manual", started_at="2026-11-28T03:00:00+00:00",
                          params={})
    again = RunPlan.from_dict(plan.to_dict())
    assert again.settings.age_recipients == tuple(recipients[:2]) and again == plan
    assert again.settings.retention["keep_daily"] == 7


def test_restore_dry_run_reads_an_encrypted_archive_with_its_identity(encrypted, keys, capsys):
    _, target = encrypted
    assert main(["restore", str(target), "--dry-run"]) == 3  # encrypted, no identity
    assert main(["restore", str(target), "--dry-run", "--identity", keys[1][0]]) == 0
    captured = capsys.readouterr()
    assert "(decrypted): 3 member names are safe; 2 members match the manifest" in captured.err
    assert "Archive of run run-enc" in captured.out
