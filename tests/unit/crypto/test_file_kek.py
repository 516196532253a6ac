"""crypto.file_kek: the development KEK in a 0600 key file (C4)."""

from __future__ import annotations

import json
import stat
import threading
from pathlib import Path

import pytest

from bastionpay.crypto.file_kek import FileKek
from bastionpay.crypto.kek import KekUnavailable
from bastionpay.kernel.clock import FrozenClock

T0 = 1_767_225_600
DEK = bytes(range(32))


def test_key_file_is_owner_only_json_with_versions(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "kek.json"
    kek = FileKek(path, clock=FrozenClock(T0))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    document = json.loads(path.read_text())
    assert document["format"] == "bastionpay-file-kek/1"
    assert [(v["version"], v["created_at"]) for v in document["versions"]] == [(1, T0)]
    kek.rotate()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # still 0600 after the atomic rewrite
    assert [v["version"] for v in json.loads(path.read_text())["versions"]] == [1, 2]
    assert not path.with_name("kek.json.tmp").exists()


def test_existing_file_is_reused_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "kek.json"
    wrapped = FileKek(path).wrap(DEK, context=b"c")
    assert FileKek(path, create=False).unwrap(wrapped, context=b"c") == DEK


def test_missing_file_is_an_error_when_creation_is_off(tmp_path: Path) -> None:
    with pytest.raises(KekUnavailable):
        FileKek(tmp_path / "absent.json", create=False)


def test_a_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "kek.json"
    kek = FileKek(path)
    path.chmod(0o644)
    with pytest.raises(KekUnavailable, match="0600"):
        kek.wrap(DEK, context=b"c")


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b'{"format": "other", "versions": []}',
        b'{"format": "bastionpay-file-kek/1", "versions": []}',
        b'{"format": "bastionpay-file-kek/1", "versions": [{"version": 1, "created_at": 0, '
        b'"key": "c2hvcnQ="}]}',
        b'{"format": "bastionpay-file-kek/1", "versions": [{"version": true, "created_at": 0, '
        b'"key": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}]}',
    ],
)
def test_corrupt_files_are_refused_without_echoing_them(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "kek.json"
    kek = FileKek(path)
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(KekUnavailable) as caught:
        kek.status()
    assert content.decode() not in str(caught.value)


def test_concurrent_rotations_lose_no_version(tmp_path: Path) -> None:
    path = tmp_path / "kek.json"
    FileKek(path)
    results: list[int] = []

    def rotate() -> None:
        results.append(FileKek(path).rotate())  # separate instances, as separate processes

    threads = [threading.Thread(target=rotate) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == list(range(2, 10))
    assert [v.version for v in FileKek(path).status().versions] == list(range(1, 10))


def test_retired_versions_leave_the_file(tmp_path: Path) -> None:
    path = tmp_path / "kek.json"
    kek = FileKek(path)
    first_key = json.loads(path.read_text())["versions"][0]["key"]
    kek.rotate()
    kek.retire(1)
    assert first_key not in path.read_text()
    status = kek.status()
    assert status.active_version == 2
    assert [(v.version, v.non_extractable) for v in status.versions] == [(2, False)]
