"""The `cachevault` Python module against the real binary installed with it: every command
the agent uses, and each exception class with its kind, exit code and document.

Run by `tests/python_package.rs` in a fresh virtual environment after `pip install .`; the
fixtures are the repository's own `config/` and `fixtures/tree/OUTPUTS`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import fcntl
import json
import os
import shutil
import stat
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest

import cachevault
from cachevault import (
    AsyncVault,
    CacheVaultCorrupt,
    CacheVaultDeferred,
    CacheVaultError,
    CacheVaultLocked,
    Vault,
)

SOURCE = Path(__file__).resolve().parents[2]
#: Every fixture file's mtime and atime (seconds since the epoch), as `config_tree` sets it.
MTIME = 1_793_000_000


def files_under(root: Path) -> Dict[str, bytes]:
    """Every regular file under `root`, by path relative to it, with its bytes."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    """The shipped config and schemas beside a copy of the fixture tree (`OUTPUTS/`), with
    the scheduled clearing made deterministic (`ttl` instead of the load-dependent
    `performance_aware`); returns the config file."""
    shutil.copytree(SOURCE / "config", tmp_path, dirs_exist_ok=True)
    shutil.copytree(SOURCE / "fixtures/tree/OUTPUTS", tmp_path / "OUTPUTS")
    for p in (tmp_path / "OUTPUTS").rglob("*"):
        if p.is_file():
            os.utime(p, (MTIME, MTIME))
    path = tmp_path / "cachevault.json"
    doc = json.loads(path.read_text())
    doc["cache"]["strategies"]["clearing"]["schedule"]["strategy"] = "ttl"
    path.write_text(json.dumps(doc, indent=2))
    return path


@pytest.fixture
def vault(cfg: Path) -> Vault:
    """A `Vault` on `cfg` whose repository exists."""
    v = Vault(config=cfg, timeout=120)
    doc = v.init()
    assert doc["exit_code"] == 0 and Path(doc["repository"]).is_dir(), doc
    return v


@pytest.fixture
def held_lock(cfg: Path, vault: Vault) -> Iterator[Path]:
    """Holds the repository lock (`locks/lock`, flock(2), exclusive) as another process
    would; yields the repository folder."""
    repo = cfg.parent / "cachevault-repo"
    fd = os.open(repo / "locks" / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield repo
    finally:
        os.close(fd)


# -- the package ---------------------------------------------------------------------------


def test_the_default_binary_is_the_one_installed_beside_the_module() -> None:
    binary = Path(cachevault.find_binary())
    assert binary.parent == Path(sys.executable).parent, (binary, sys.executable)
    assert Vault().binary == str(binary)
    assert os.access(binary, os.X_OK)
    module = Path(cachevault.__file__).resolve()
    assert SOURCE / "python" not in module.parents, f"{module} is the source, not the install"
    typed = module.parent / "py.typed"
    assert typed.is_file(), f"{typed} is missing from the installed package"


def test_keywords_map_to_flags() -> None:
    assert cachevault.flags(
        {
            "keep_daily": 7,
            "keep_tag": ["a", "b"],
            "dry_run": True,
            "prune": False,
            "now": None,
            "time": dt.datetime(2026, 11, 20, 14, 0, tzinfo=dt.timezone.utc),
            "at": dt.datetime(2026, 11, 20, 14, 0, 5),
        }
    ) == [
        "--keep-daily",
        "7",
        "--keep-tag",
        "a",
        "--keep-tag",
        "b",
        "--dry-run",
        "--time",
        "2026-11-20T14:00:00+00:00",
        "--at",
        "2026-11-20 14:00:05",
    ]


@pytest.fixture
def echo(tmp_path: Path) -> Path:
    """A stand-in binary that prints its arguments and CACHEVAULT_PASSWORD as JSON (inside a
    list for `snapshots`, as the real one answers)."""
    script = tmp_path / "echo-cachevault"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        'doc = {"argv": sys.argv[1:], "password": os.environ.get("CACHEVAULT_PASSWORD")}\n'
        'print(json.dumps([doc] if "snapshots" in sys.argv else doc))\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_command_lines_and_password(echo: Path) -> None:
    v = Vault(config="c.json", repo="r", binary=echo, password="s3cret", lock_wait=2.5)
    doc = v.forget(keep_daily=7, keep_tag=["a", "b"], prune=True)
    assert doc["argv"] == [
        "--config",
        "c.json",
        "--repo",
        "r",
        "--lock-wait",
        "3",
        "--json",
        "forget",
        "--keep-daily",
        "7",
        "--keep-tag",
        "a",
        "--keep-tag",
        "b",
        "--prune",
    ], doc
    assert doc["password"] == "s3cret" and doc["exit_code"] == 0
    assert "CACHEVAULT_PASSWORD" not in os.environ, "the password leaked into this process"
    plain = Vault(binary=echo)
    cases: List[Tuple[Any, List[str]]] = [
        (plain.undo(), ["undo"]),
        (plain.undo("abc", force=True, dry_run=True), ["undo", "abc", "--force", "--dry-run"]),
        (plain.repair(), ["repair"]),
        (plain.repair(types=["t"], force=True), ["repair", "--type", "t", "--force"]),
        (plain.restore(), ["restore", "latest"]),
        (
            plain.restore(at="2026-11-20 14:00", in_place=True),
            ["restore", "--at", "2026-11-20 14:00", "--in-place"],
        ),
        (
            plain.snapshots(tag=["a", "b"], kind="backup"),
            ["snapshots", "--tag", "a", "--tag", "b", "--kind", "backup"],
        ),
        (plain.warm(from_clear="c1", top=3), ["warm", "--from", "c1", "--top", "3"]),
        (plain.run_due(now="2026-11-20T02:30:00Z"), ["run-due", "--now", "2026-11-20T02:30:00Z"]),
        (plain.check(read_data=True), ["check", "--read-data"]),
        (
            plain.clear(strategy="ttl", types=["a", "b"]),
            ["clear", "--strategy", "ttl", "--type", "a", "--type", "b"],
        ),
    ]
    for doc, expected in cases:
        got = doc[0]["argv"] if isinstance(doc, list) else doc["argv"]
        assert got == ["--json", *expected], (got, expected)
    assert plain.run("history", "--last", 2)["argv"] == ["--json", "history", "--last", "2"]


# -- the commands against the real binary --------------------------------------------------


def test_snapshot_list_and_restore_byte_for_byte(cfg: Path, vault: Vault, tmp_path: Path) -> None:
    snap = vault.snapshot(tags=["pre-run"], time="2026-11-20T14:00:00+00:00")
    assert snap["exit_code"] == 0 and snap["files_new"] > 0 and snap["complete"], snap
    listed = vault.snapshots()
    assert [s["id"] for s in listed] == [snap["id"]], listed
    assert listed[0]["tags"] == ["pre-run"]

    target = tmp_path / "restored"
    doc = vault.restore(snap["id"], target=target)
    assert doc["exit_code"] == 0 and doc["errors"] == [], doc
    restored = files_under(target)
    source = files_under(cfg.parent / "OUTPUTS")
    assert len(restored) == doc["files"] > 0
    for rel, data in restored.items():
        assert source.get(rel) == data, f"{rel} differs from the cache file"
    # Every backed-up type comes back whole (ai_category_cache has backups disabled).
    amazon = {r for r in source if r.startswith("FBA_ANALYSIS/amazon_cache/")}
    assert amazon and amazon <= set(restored), amazon - set(restored)

    # `at` instead of an id, and one path only.
    part = tmp_path / "part"
    doc = vault.restore(
        at=dt.datetime(2026, 11, 20, 15, 0, tzinfo=dt.timezone.utc),
        target=part,
        paths=["FBA_ANALYSIS/amazon_cache"],
    )
    assert doc["snapshot"] == snap["id"], doc
    assert set(files_under(part)) == amazon


def test_clear_selective_then_undo_puts_everything_back(cfg: Path, vault: Vault) -> None:
    root = cfg.parent / "OUTPUTS"
    before = files_under(root)
    plan = vault.clear(strategy="selective", dry_run=True)
    assert plan["dry_run"] is True and plan["deleted"], plan
    assert files_under(root) == before, "a dry run changed the tree"

    cleared = vault.clear(strategy="selective")
    assert cleared["exit_code"] == 0 and cleared["clear_id"] and cleared["snapshot"], cleared
    gone = [d["path"] for d in cleared["deleted"]]
    assert gone and not any((root / p).exists() for p in gone), gone

    undone = vault.undo(cleared["clear_id"])
    assert undone["exit_code"] == 0 and len(undone["restored"]) == len(gone), undone
    assert files_under(root) == before


def test_warm_restores_the_top_entries_of_a_clear(cfg: Path, vault: Vault) -> None:
    cleared = vault.clear(strategy="full")
    assert len(cleared["deleted"]) > 2, cleared
    warmed = vault.warm(from_clear=cleared["clear_id"], top=2)
    assert warmed["exit_code"] == 0, warmed
    back = [
        p for p in (d["path"] for d in cleared["deleted"]) if (cfg.parent / "OUTPUTS" / p).exists()
    ]
    assert len(back) == 2, (back, warmed)


def test_validate_reports_an_invalid_file_with_exit_code_1(cfg: Path, vault: Vault) -> None:
    ok = vault.validate()
    assert (
        ok["exit_code"] == 0 and ok["ok"] is True and ok["invalid"] == [] and ok["checked"] > 0
    ), ok
    broken = cfg.parent / "OUTPUTS/FBA_ANALYSIS/amazon_cache/amazon_B0BROKEN01.json"
    broken.write_text('{"asin": ')
    bad = vault.validate(types=["amazon_cache"])
    assert bad["exit_code"] == 1 and bad["ok"] is False, bad
    assert [(f["path"], f["reason"]) for f in bad["invalid"]] == [
        ("FBA_ANALYSIS/amazon_cache/amazon_B0BROKEN01.json", "truncated")
    ], bad["invalid"]

    # repair with no good version anywhere quarantines the file.
    vault.snapshot()
    repaired = vault.repair(types=["amazon_cache"])
    assert [q["path"] for q in repaired["quarantined"]] == [
        "FBA_ANALYSIS/amazon_cache/amazon_B0BROKEN01.json"
    ], repaired
    assert not broken.exists()


def test_stats_health_and_check(vault: Vault) -> None:
    vault.snapshot()
    stats = vault.stats()
    assert stats["exit_code"] == 0, stats
    assert stats["cache_types"]["amazon_cache"]["files"] > 0, stats["cache_types"]
    assert stats["repository"]["snapshots"] == 1, stats["repository"]

    health = vault.health()
    assert health["status"] in ("ok", "warning", "critical"), health
    assert health["exit_code"] == {"ok": 0, "warning": 1, "critical": 2}[health["status"]]
    # Far in the future the last backup is too old: critical is a report, not an error.
    late = vault.health(now="2030-01-01T00:00:00+00:00")
    assert late["status"] == "critical" and late["exit_code"] == 2, late

    check = vault.check(read_data=True)
    assert check["exit_code"] == 0 and check["ok"] is True and check["errors"] == [], check


def test_forget_keep_last_then_prune(cfg: Path, vault: Vault) -> None:
    first = vault.snapshot(time="2026-11-19T10:00:00+00:00")
    (cfg.parent / "OUTPUTS/FBA_ANALYSIS/amazon_cache/amazon_B0NEW00001.json").write_text("{}")
    second = vault.snapshot(time="2026-11-20T10:00:00+00:00")
    forgot = vault.forget(keep_last=1)
    removed = [r["id"] for g in forgot["groups"] for r in g["remove"]]
    kept = [k["id"] for g in forgot["groups"] for k in g["keep"]]
    assert removed == [first["id"]] and kept == [second["id"]], forgot
    pruned = vault.prune()
    assert pruned["exit_code"] == 0, pruned
    assert [s["id"] for s in vault.snapshots()] == [second["id"]]
    assert vault.check(read_data=True)["ok"] is True


def test_run_due_runs_each_job_once_at_the_same_time(vault: Vault) -> None:
    now = "2026-11-20T02:30:00+00:00"
    first = vault.run_due(now=now)
    ran = {j["job"]: j["ran"] for j in first["jobs"]}
    assert first["exit_code"] == 0 and ran == dict.fromkeys(
        ["backup", "clearing", "validation", "optimization"], True
    ), first
    again = vault.run_due(now=now)
    assert again["exit_code"] == 0 and not any(j.get("ran") for j in again["jobs"]), again


# -- errors --------------------------------------------------------------------------------


def test_usage_errors(vault: Vault) -> None:
    with pytest.raises(CacheVaultError) as e:
        vault.clear(strategy="no_such_strategy")
    assert type(e.value) is CacheVaultError
    assert (e.value.exit_code, e.value.kind) == (2, "usage"), e.value
    assert e.value.doc["kind"] == "usage" and e.value.doc["exit_code"] == 2
    assert "no_such_strategy" in str(e.value) and "no_such_strategy" in e.value.doc["error"]
    assert "no_such_strategy" in e.value.stderr

    # A flag this binary does not know: clap's parse error, still one JSON document.
    with pytest.raises(CacheVaultError) as e:
        vault.snapshots(no_such_filter="x")
    assert (e.value.exit_code, e.value.kind) == (2, "usage"), e.value
    assert "--no-such-filter" in e.value.doc["error"], e.value.doc


def test_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "cachevault.json"
    bad.write_text('{"cache": {"root": 5}}')
    with pytest.raises(CacheVaultError) as e:
        Vault(config=bad).stats()
    assert (e.value.exit_code, e.value.kind) == (2, "config"), e.value
    assert str(bad) in e.value.doc["error"]
    with pytest.raises(CacheVaultError) as e:
        Vault(config=tmp_path / "missing.json").snapshots()
    assert (e.value.exit_code, e.value.kind) == (2, "config"), e.value


def test_no_repository_and_not_found(tmp_path: Path, vault: Vault) -> None:
    with pytest.raises(CacheVaultError) as e:
        Vault(repo=tmp_path / "nowhere").snapshots()
    assert (e.value.exit_code, e.value.kind) == (2, "no_repository"), e.value
    with pytest.raises(CacheVaultError) as e:
        vault.restore("deadbeef", target=tmp_path / "t")
    assert (e.value.exit_code, e.value.kind) == (2, "not_found"), e.value
    assert "deadbeef" in e.value.doc["error"]


def test_corrupt_repository_raises_corrupt(cfg: Path, vault: Vault) -> None:
    vault.snapshot()
    bogus = cfg.parent / "cachevault-repo/snapshots" / ("ab" * 32 + ".json")
    bogus.write_bytes(b"\x00garbage, not a manifest")
    # The listing still comes back whole, the damaged manifest named in it.
    with pytest.raises(CacheVaultCorrupt) as e:
        vault.snapshots()
    assert (e.value.exit_code, e.value.kind) == (3, "corrupt"), e.value
    damaged = [s for s in e.value.doc if s.get("damaged")]
    assert len(damaged) == 1 and damaged[0]["id"] == "ab" * 32, e.value.doc
    assert any(not s.get("damaged") for s in e.value.doc)
    # Asked for by id, it is an error document of kind corrupt naming it.
    with pytest.raises(CacheVaultCorrupt) as e:
        vault.run("ls", "ab" * 32)
    assert e.value.doc["kind"] == "corrupt" and "manifest abababab" in e.value.doc["error"]


def test_check_finding_damage_raises_corrupt_with_its_report(cfg: Path, vault: Vault) -> None:
    vault.snapshot()
    archives = sorted((cfg.parent / "cachevault-repo/archives").rglob("*"))
    archive = next(p for p in archives if p.is_file() and p.stat().st_size > 100)
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.chmod(0o600)
    archive.write_bytes(bytes(data))
    with pytest.raises(CacheVaultCorrupt) as e:
        vault.check(read_data=True)
    assert (e.value.exit_code, e.value.kind) == (3, "corrupt"), e.value
    assert e.value.doc["ok"] is False and e.value.doc["errors"], e.value.doc


def test_locked_repository_raises_locked(cfg: Path, held_lock: Path) -> None:
    with pytest.raises(CacheVaultLocked) as e:
        Vault(config=cfg, lock_wait=0).prune()
    assert (e.value.exit_code, e.value.kind) == (4, "locked"), e.value
    assert e.value.doc["kind"] == "locked" and "locked" in e.value.doc["error"]


def test_deferred_clear_raises_deferred(vault: Vault) -> None:
    with pytest.raises(CacheVaultDeferred) as e:
        vault.clear(strategy="performance_aware", load_average=1000.0)
    assert (e.value.exit_code, e.value.kind) == (5, "deferred"), e.value
    assert e.value.doc["deferred"] is True and e.value.doc["deleted"] == [], e.value.doc


def test_timeout_interrupts_the_command(cfg: Path, held_lock: Path) -> None:
    start = time.monotonic()
    with pytest.raises(CacheVaultError) as e:
        Vault(config=cfg, lock_wait=60, timeout=1).prune()
    took = time.monotonic() - start
    assert e.value.kind == "timeout", e.value
    assert e.value.exit_code is not None and e.value.exit_code < 0, e.value.exit_code
    assert took < 1 + cachevault._vault.INTERRUPT_GRACE_SECONDS + 3, f"took {took:.1f}s"


def test_a_missing_binary_raises(tmp_path: Path) -> None:
    with pytest.raises(CacheVaultError) as e:
        Vault(binary=tmp_path / "no-such-binary").stats()
    assert e.value.kind == "no_binary" and e.value.exit_code is None, e.value


# -- cache types and AsyncVault ------------------------------------------------------------

LINK = "FBA_ANALYSIS/Linking map/linking_map.json"


def test_backup_manager_names_map_to_type_flags(echo: Path) -> None:
    when = dt.datetime(2026, 11, 20, 14, 0, tzinfo=dt.timezone.utc)
    expected = [
        ["snapshot", "--type", "linking_map"],
        ["restore", "latest", "--in-place", "--type", "amazon_cache"],
        ["restore", "--at", "2026-11-20T14:00:00+00:00", "--in-place", "--type", "amazon_cache"],
        ["restore", "--at", "2026-11-20 14:00", "--target", "out", "--type", "amazon_cache"],
    ]

    def calls(v: Any) -> List[Any]:
        return [
            v.create_backup("linking_map"),
            v.restore_from_backup("amazon_cache"),
            v.restore_from_backup("amazon_cache", when),
            v.restore_from_backup("amazon_cache", "2026-11-20 14:00", target="out"),
        ]

    sync = [d["argv"][1:] for d in calls(Vault(binary=echo))]
    assert sync == expected, sync

    async def main() -> List[Any]:
        return list(await asyncio.gather(*calls(AsyncVault(binary=echo))))

    docs = asyncio.run(main())
    assert [d["argv"][1:] for d in docs] == expected, docs
    assert all(d["exit_code"] == 0 for d in docs)


def test_async_vault_has_every_command_as_a_coroutine() -> None:
    import inspect

    names = [n for n in dir(Vault) if not n.startswith("_") and callable(getattr(Vault, n))]
    for name in names:
        if name == "command":
            continue
        assert inspect.iscoroutinefunction(getattr(AsyncVault, name)), name
    assert "create_backup" in names and "restore_from_backup" in names


def test_async_backup_and_restore_by_type(cfg: Path, vault: Vault, tmp_path: Path) -> None:
    root = cfg.parent / "OUTPUTS"
    original = (root / LINK).read_bytes()
    av = AsyncVault(config=cfg, timeout=120)

    async def main() -> Tuple[Any, Any, Any, int]:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.001)

        t = asyncio.create_task(ticker())
        first = await av.create_backup("linking_map", time="2026-11-20T14:00:00+00:00")
        (root / LINK).write_bytes(original + b"\n")
        restored = await av.restore_from_backup(
            "linking_map", "2026-11-20T15:00:00+00:00", target=tmp_path / "out"
        )
        listed, stats = await asyncio.gather(av.snapshots(tag="type:linking_map"), av.stats())
        done.set()
        await t
        return first, restored, (listed, stats), ticks

    first, restored, (listed, stats), ticks = asyncio.run(main())
    assert first["complete"] and first["tags"] == ["type:linking_map"], first
    assert list(first["types"]) == ["linking_map"], first
    assert restored["snapshot"] == first["id"], restored
    assert files_under(tmp_path / "out") == {LINK: original}
    assert [s["id"] for s in listed] == [first["id"]]
    assert "repository" in stats
    # The loop kept running while the commands ran.
    assert ticks > 10, ticks
    # In place (the default without a target): the file comes back, and undo reverts it.
    back = vault.restore_from_backup("linking_map")
    assert back["snapshot"] == first["id"] and (root / LINK).read_bytes() == original, back
    vault.undo()
    assert (root / LINK).read_bytes() == original + b"\n"
    with pytest.raises(CacheVaultError) as e:
        asyncio.run(av.create_backup("no_such_type"))
    assert e.value.kind == "usage" and e.value.exit_code == 2, e.value
    assert "no_such_type" in str(e.value)


def test_a_cancelled_snapshot_leaves_a_sound_repository(cfg: Path, vault: Vault) -> None:
    # Enough data (160 MB that does not compress) for the snapshot to be cut short.
    big = cfg.parent / "OUTPUTS" / "FBA_ANALYSIS" / "Linking map" / "big"
    big.mkdir()
    for i in range(40):
        (big / f"part{i:02}.json").write_bytes(os.urandom(4_000_000))
    locks = cfg.parent / "cachevault-repo" / "locks"
    av = AsyncVault(config=cfg, timeout=120)

    async def main() -> float:
        task = asyncio.create_task(av.create_backup("linking_map"))
        # Once the command holds the repository lock, it is snapshotting.
        deadline = time.monotonic() + 30
        while not any(p.suffix == ".holder" for p in locks.iterdir()):
            assert not task.done(), task
            assert time.monotonic() < deadline, "the snapshot never took the lock"
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)
        assert not task.done(), "the snapshot finished before it could be cancelled"
        start = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - start

    took = asyncio.run(main())
    assert took < cachevault._vault.INTERRUPT_GRACE_SECONDS, f"took {took:.1f}s"
    # The command had exited when the cancellation went on: it journaled itself as
    # interrupted (SIGINT), released the lock and left no snapshot behind.
    ops = vault.run("history", "--operation", "snapshot")["operations"]
    assert [o["result"] for o in ops] == ["interrupted"], ops
    assert not any(p.suffix == ".holder" for p in locks.iterdir())
    assert vault.snapshots() == []
    assert vault.check(read_data=True)["ok"] is True
    # And the next backup goes through.
    snap = vault.create_backup("linking_map")
    assert snap["complete"] and snap["types"]["linking_map"]["files"] == 41, snap
