"""The agent's journal in its spool: what it remembers across restarts, and what it
refuses to remember."""

from __future__ import annotations

from pathlib import Path

import pytest

from visio_agent.journal import Entry, Journal, valid_key


def entry(key: str = "scan-key-0001", **fields: object) -> Entry:
    values: dict[str, object] = {
        "key": key,
        "call": "call-1",
        "kind": "scan",
        "state": "queued",
        "updated_at": 1000.0,
        **fields,
    }
    return Entry(**values)  # type: ignore[arg-type]


def test_entries_survive_a_restart(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.put(entry(upload_url="/api/calls/call-1/documents", upload_kbps=160, title="Avis"))
    journal.put(entry("print-key-0001", kind="print", state="printing", job=42, document="d-1"))
    first = journal.get("scan-key-0001")
    assert first is not None
    first.state = "uploading"
    first.spooled = True
    journal.put(first)

    again = Journal(tmp_path)
    assert len(again) == 2
    scan = again.get("scan-key-0001")
    assert scan is not None
    assert (scan.state, scan.spooled, scan.title) == ("uploading", True, "Avis")
    printing = again.get("print-key-0001")
    assert printing is not None and (printing.job, printing.document) == (42, "d-1")
    assert not printing.finished
    assert {path.name for path in tmp_path.iterdir()} >= {"commands.json", "scans", "pages"}
    assert not (tmp_path / "commands.json.part").exists()


def test_finished_and_told_keys_are_forgotten_after_a_while(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.put(entry("old-done-0001", state="done", reported=True, updated_at=100.0))
    journal.put(entry("old-untold-001", state="failed", reported=False, updated_at=100.0))
    journal.put(entry("old-running-01", state="scanning", updated_at=100.0))
    journal.put(entry("recent-done-01", state="done", reported=True, updated_at=9_000.0))
    assert journal.prune(now=10_000.0, keep_s=3600) == 1
    assert {e.key for e in Journal(tmp_path)} == {
        "old-untold-001",
        "old-running-01",
        "recent-done-01",
    }


def test_an_unreadable_journal_is_kept_aside_and_the_agent_starts_afresh(
    tmp_path: Path,
) -> None:
    (tmp_path / "commands.json").write_text("{half a journ", "utf-8")
    journal = Journal(tmp_path)
    assert len(journal) == 0
    assert (tmp_path / "commands.json.unreadable").read_text("utf-8") == "{half a journ"
    journal.put(entry())
    assert len(Journal(tmp_path)) == 1


def test_keys_that_could_name_other_files_are_refused(tmp_path: Path) -> None:
    assert valid_key("0b6f2d9e-scan-1") and valid_key("a_b-C")
    for bad in ("../../etc/passwd", "a/b", "", "x" * 65, "key with space", "é-key"):
        assert not valid_key(bad)
    with pytest.raises(ValueError):
        Journal(tmp_path).put(entry("../escape"))


def test_spool_paths_stay_in_the_spool(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    assert journal.scan_path("k-1") == tmp_path / "scans" / "k-1.pdf"
    assert journal.page_path("k-1", 3) == tmp_path / "pages" / "k-1" / "3.png"
    for key in ("k", "k-1"):
        journal.page_path(key, 1).write_bytes(b"png")
    journal.drop_pages("k")
    assert [p.name for p in (tmp_path / "pages").iterdir()] == ["k-1"]
