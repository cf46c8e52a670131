"""Python interface to cachevault, the backup and archival engine for application cache
directories.

Every call runs the ``cachevault`` binary installed with this package, with ``--json``, and
returns the command's JSON document::

    from cachevault import Vault, CacheVaultDeferred

    vault = Vault(config="cachevault.json", timeout=600)
    snap = vault.snapshot(tags=["pre-run"])
    try:
        cleared = vault.clear(strategy="selective")
    except CacheVaultDeferred as e:
        print("busy, try later:", e.doc["deferred_reason"])

:class:`AsyncVault` has the same methods as coroutines, for asyncio::

    from cachevault import AsyncVault

    snap = await AsyncVault(config="cachevault.json").create_backup("linking_map")

Failures raise :class:`CacheVaultError` (``exit_code``, ``kind``, ``doc``, ``stderr``), or
one of its subclasses :class:`CacheVaultCorrupt` (exit code 3), :class:`CacheVaultLocked`
(4) and :class:`CacheVaultDeferred` (5).
"""

from ._vault import (
    AsyncVault,
    CacheVaultCorrupt,
    CacheVaultDeferred,
    CacheVaultError,
    CacheVaultLocked,
    Document,
    FlagValue,
    Vault,
    find_binary,
    flags,
)

__all__ = [
    "AsyncVault",
    "CacheVaultCorrupt",
    "CacheVaultDeferred",
    "CacheVaultError",
    "CacheVaultLocked",
    "Document",
    "FlagValue",
    "Vault",
    "find_binary",
    "flags",
]
