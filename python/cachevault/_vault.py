"""Runs the ``cachevault`` binary with ``--json`` and turns its exit codes into results or
exceptions. Owns the mapping from Python arguments to command-line flags; knows nothing of
the repository format."""

from __future__ import annotations

import asyncio
import datetime as _dt
import functools
import json
import math
import os
import shutil
import signal
import subprocess
import sysconfig
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

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

#: A value a keyword argument may carry: it becomes one flag, a bare flag (``True``), no flag
#: (``None``, ``False``) or a repeated flag (a list or tuple).
FlagValue = Union[
    None,
    bool,
    int,
    float,
    str,
    "os.PathLike[str]",
    _dt.datetime,
    Sequence[Union[int, float, str, "os.PathLike[str]", _dt.datetime]],
]

#: A parsed JSON document.
Document = Dict[str, Any]

#: Seconds a timed-out command gets after SIGINT before it is killed.
INTERRUPT_GRACE_SECONDS = 5.0

#: Exit codes that mean the command completed; the document is returned.
_COMPLETED = (0, 1)

#: The kind an exit code implies when the document does not name one (result documents of
#: `check` or `restore` that found damage, older binaries).
_KIND_BY_EXIT = {3: "corrupt", 4: "locked", 5: "deferred"}


class CacheVaultError(Exception):
    """A ``cachevault`` command failed.

    Attributes:
        exit_code: the process's exit code: negative when a signal ended it (``-2`` for
            the SIGINT of a timeout), ``None`` when it never ran or printed no usable
            document.
        kind: a stable word for what went wrong: the ``kind`` of the JSON error document
            (``usage``, ``config``, ``no_repository``, ``not_found``, ``corrupt``,
            ``locked``, ``io``, ``disk_full``, ``unsafe_path``, ``exists``,
            ``unsupported_format``), ``deferred`` for exit code 5, or one the module sets
            itself: ``timeout``, ``no_binary``, ``bad_output``, ``failed``.
        doc: the JSON document the command printed (``None`` when it printed none).
        stderr: what the command wrote on stderr.
        command: the full command line that ran.
    """

    def __init__(
        self,
        message: str,
        *,
        exit_code: Optional[int],
        kind: str,
        doc: Any = None,
        stderr: str = "",
        command: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.message: str = message
        self.exit_code: Optional[int] = exit_code
        self.kind: str = kind
        self.doc: Any = doc
        self.stderr: str = stderr
        self.command: List[str] = list(command)


class CacheVaultDeferred(CacheVaultError):
    """Exit code 5: a ``performance_aware`` clear was deferred because the machine is busy;
    nothing changed. ``doc`` is the clear's document (``deferred_reason`` says why)."""


class CacheVaultLocked(CacheVaultError):
    """Exit code 4: another process holds the repository lock and ``lock_wait`` ran out."""


class CacheVaultCorrupt(CacheVaultError):
    """Exit code 3: repository data is damaged (``check`` found errors, a restore could not
    verify a file, or a repository file could not be decoded)."""


_CLASS_BY_EXIT = {3: CacheVaultCorrupt, 4: CacheVaultLocked, 5: CacheVaultDeferred}


def find_binary() -> str:
    """Returns the path of the ``cachevault`` binary installed with this module.

    Looks in the scripts folder of the install scheme the module lives in (the
    interpreter's, a virtual environment's, or the user's ``~/.local/bin`` for ``pip install
    --user``), then on ``PATH``.

    Raises:
        CacheVaultError: with kind ``no_binary`` when none is found.
    """
    name = "cachevault.exe" if os.name == "nt" else "cachevault"
    here = os.path.dirname(os.path.abspath(__file__))
    schemes: List[Optional[str]] = [None]
    user_scheme = _user_scheme()
    if user_scheme is not None:
        schemes.append(user_scheme)
    candidates: List[str] = []
    for scheme in schemes:
        paths = sysconfig.get_paths(scheme) if scheme else sysconfig.get_paths()
        scripts = paths.get("scripts")
        if not scripts:
            continue
        candidate = os.path.join(scripts, name)
        libs = [paths.get("purelib"), paths.get("platlib")]
        # The scheme this module was installed into comes first.
        if any(lib and _is_under(here, lib) for lib in libs):
            candidates.insert(0, candidate)
        else:
            candidates.append(candidate)
    for candidate in candidates:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name)
    if found:
        return found
    raise CacheVaultError(
        f"cannot find the cachevault binary: looked in {', '.join(candidates)} and on PATH; "
        "install the package with `pip install .` or pass binary=",
        exit_code=None,
        kind="no_binary",
    )


def _user_scheme() -> Optional[str]:
    """The install scheme of `pip install --user`."""
    preferred = getattr(sysconfig, "get_preferred_scheme", None)  # Python 3.10 and later
    if preferred is not None:
        return str(preferred("user"))
    return "nt_user" if os.name == "nt" else "posix_user"


def _is_under(path: str, folder: str) -> bool:
    try:
        return os.path.commonpath([path, os.path.abspath(folder)]) == os.path.abspath(folder)
    except ValueError:
        return False


def _value(v: Any) -> str:
    """One flag value as the command line wants it."""
    if isinstance(v, _dt.datetime):
        if v.tzinfo is None:
            # The CLI reads "YYYY-MM-DD HH:MM:SS" as local time, like a naive datetime.
            return v.strftime("%Y-%m-%d %H:%M:%S")
        return v.isoformat()
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, os.PathLike):
        return str(os.fspath(v))
    return str(v)


def flags(options: Mapping[str, FlagValue]) -> List[str]:
    """Maps keyword arguments to flags, in the order given.

    ``keep_daily=7`` becomes ``--keep-daily 7``; ``tag=["a", "b"]`` becomes
    ``--tag a --tag b``; ``True`` a bare flag; ``None`` and ``False`` nothing. Datetimes are
    written as RFC 3339 (aware) or local ``YYYY-MM-DD HH:MM:SS`` (naive).
    """
    out: List[str] = []
    for key, v in options.items():
        flag = "--" + key.replace("_", "-")
        if v is None or v is False:
            continue
        if v is True:
            out.append(flag)
        elif isinstance(v, (list, tuple)):
            for item in v:
                out += [flag, _value(item)]
        else:
            out += [flag, _value(v)]
    return out


class _Commands:
    """The commands and their flags, shared by :class:`Vault` and :class:`AsyncVault`; each
    runs through ``_call``, which the two classes implement."""

    def __init__(
        self,
        config: Union[str, "os.PathLike[str]", None] = None,
        repo: Union[str, "os.PathLike[str]", None] = None,
        binary: Union[str, "os.PathLike[str]", None] = None,
        password: Optional[str] = None,
        lock_wait: Optional[float] = None,
        timeout: Optional[float] = None,
    ) -> None:
        """Describes how to reach the repository.

        Args:
            config: the config file (``--config``); it names the cache root and the
                repository. Without it, the binary falls back on ``CACHEVAULT_CONFIG``.
            repo: the repository folder (``--repo``), overriding the config's.
            binary: the ``cachevault`` executable; default: the one installed with this
                module (:func:`find_binary`).
            password: set as ``CACHEVAULT_PASSWORD`` in the command's environment only.
            lock_wait: seconds to wait for a repository lock (``--lock-wait``; the binary's
                default is 60).
            timeout: seconds each command may take; then it gets SIGINT, and is killed
                if it has not stopped a few seconds later (kind ``timeout``).
        """
        self.config: Optional[str] = os.fspath(config) if config is not None else None
        self.repo: Optional[str] = os.fspath(repo) if repo is not None else None
        self.binary: str = os.fspath(binary) if binary is not None else find_binary()
        self.password: Optional[str] = password
        self.lock_wait: Optional[float] = lock_wait
        self.timeout: Optional[float] = timeout

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(config={self.config!r}, repo={self.repo!r}, "
            f"binary={self.binary!r})"
        )

    def _call(
        self, shape: Callable[[Any], Any], *args: Any, report_codes: Tuple[int, ...] = ()
    ) -> Any:
        raise NotImplementedError

    # -- commands -----------------------------------------------------------------------

    def init(self) -> Document:
        """Creates an empty repository (``init``)."""
        return self._call(self._object, "init")

    def snapshot(
        self,
        path: Union[str, "os.PathLike[str]", None] = None,
        tags: Sequence[str] = (),
        time: Union[str, _dt.datetime, None] = None,
        **options: FlagValue,
    ) -> Document:
        """Snapshots ``path``, or with a config its backup-enabled cache types
        (``snapshot``); ``tags`` become ``--tag``, ``time`` is recorded instead of now."""
        args: List[str] = ["snapshot"]
        if path is not None:
            args.append(os.fspath(path))
        args += flags({"tag": list(tags), "time": time, **options})
        return self._call(self._object, *args)

    def snapshots(self, **filters: FlagValue) -> List[Document]:
        """Lists snapshots (``snapshots``), oldest first; ``filters`` become flags."""
        return self._call(self._list, "snapshots", *flags(filters))

    def restore(
        self,
        snapshot: str = "latest",
        target: Union[str, "os.PathLike[str]", None] = None,
        in_place: bool = False,
        paths: Sequence[str] = (),
        at: Union[str, _dt.datetime, None] = None,
        dry_run: bool = False,
        **filters: FlagValue,
    ) -> Document:
        """Restores a snapshot (``restore``), verified byte for byte.

        ``snapshot`` is an id, a unique prefix or ``latest``; ``at`` instead picks the
        newest snapshot at or before that time. Give ``target`` or ``in_place=True``;
        ``paths`` restricts the restore to those paths of the snapshot.
        """
        args: List[str] = ["restore"]
        if at is None:
            args.append(snapshot)
        args += flags(
            {
                "at": at,
                "target": target,
                "in_place": in_place,
                "path": list(paths),
                "dry_run": dry_run,
                **filters,
            }
        )
        return self._call(self._object, *args)

    def clear(
        self,
        strategy: Optional[str] = None,
        types: Sequence[str] = (),
        dry_run: bool = False,
        now: Union[str, _dt.datetime, None] = None,
        **options: FlagValue,
    ) -> Document:
        """Clears caches by ``strategy`` after a verified pre-clear snapshot (``clear``);
        default strategy: the config's. ``types`` become ``--type``.

        Raises:
            CacheVaultDeferred: a ``performance_aware`` clear found the machine busy.
        """
        args = flags(
            {"strategy": strategy, "type": list(types), "dry_run": dry_run, "now": now, **options}
        )
        return self._call(self._object, "clear", *args)

    def undo(
        self,
        id: Optional[str] = None,
        force: bool = False,
        dry_run: bool = False,
        **options: FlagValue,
    ) -> Document:
        """Puts back what a clear (default: the last) removed or rewrote (``undo``);
        ``force`` overwrites files changed since the clear."""
        args: List[str] = ["undo"]
        if id is not None:
            args.append(id)
        # Passed only when asked for: binaries without `undo --dry-run` still work.
        args += flags({"force": force, "dry_run": dry_run, **options})
        return self._call(self._object, *args)

    def validate(self, types: Sequence[str] = (), **options: FlagValue) -> Document:
        """Checks every cache file of the types with validation enabled (``validate``);
        exit code 1 (``doc["exit_code"]``) when a file is invalid."""
        return self._call(self._object, "validate", *flags({"type": list(types), **options}))

    def repair(
        self,
        types: Sequence[str] = (),
        dry_run: bool = False,
        force: bool = False,
        **options: FlagValue,
    ) -> Document:
        """Replaces invalid cache files by their newest valid snapshot version and
        quarantines the rest (``repair``)."""
        # `force` is passed only when asked for: binaries without `repair --force` still work.
        args = flags({"type": list(types), "dry_run": dry_run, "force": force, **options})
        return self._call(self._object, "repair", *args)

    def warm(
        self, from_clear: Optional[str] = None, top: Optional[int] = None, **options: FlagValue
    ) -> Document:
        """Restores the most recently used entries a clear removed (``warm``)."""
        return self._call(self._object, "warm", *flags({"from": from_clear, "top": top, **options}))

    def stats(self, **options: FlagValue) -> Document:
        """Per cache type and repository statistics (``stats``)."""
        return self._call(self._object, "stats", *flags(options))

    def health(self, **options: FlagValue) -> Document:
        """The health report (``health``): ``status`` is ``ok``, ``warning`` or
        ``critical``.

        A critical report (exit code 2) is returned, not raised, since it is the answer
        asked for; an error (bad arguments, say) still raises.
        """
        return self._call(self._object, "health", *flags(options), report_codes=(2,))

    def forget(self, dry_run: bool = False, prune: bool = False, **keep: FlagValue) -> Document:
        """Removes snapshots by keep rules (``forget``): ``keep_daily=7`` is
        ``--keep-daily 7``, ``keep_tag=["a", "b"]`` repeats ``--keep-tag``. Without rules
        the config's retention policy applies."""
        args = flags({**keep, "dry_run": dry_run, "prune": prune})
        return self._call(self._object, "forget", *args)

    def prune(self, dry_run: bool = False, **options: FlagValue) -> Document:
        """Deletes data no snapshot uses and repacks mostly-unused archives (``prune``)."""
        return self._call(self._object, "prune", *flags({"dry_run": dry_run, **options}))

    def check(self, read_data: bool = False, **options: FlagValue) -> Document:
        """Verifies the repository (``check``); ``read_data`` re-hashes every blob.

        Raises:
            CacheVaultCorrupt: damage was found; ``doc`` lists it.
        """
        return self._call(self._object, "check", *flags({"read_data": read_data, **options}))

    def run_due(
        self,
        now: Union[str, _dt.datetime, None] = None,
        dry_run: bool = False,
        **options: FlagValue,
    ) -> Document:
        """Runs each scheduled job of the config that is due (``run-due``); exit code 1
        (``doc["exit_code"]``) when a job failed."""
        return self._call(
            self._object, "run-due", *flags({"now": now, "dry_run": dry_run, **options})
        )

    # -- the BackupManager names ---------------------------------------------------------

    def create_backup(self, cache_type: str, **options: FlagValue) -> Document:
        """A type backup of one cache type's folder: :meth:`snapshot` with ``--type``
        (tagged ``type:<cache_type>``)."""
        return self.snapshot(type=[cache_type], **options)

    def restore_from_backup(
        self,
        cache_type: str,
        timestamp: Union[str, _dt.datetime, None] = None,
        target: Union[str, "os.PathLike[str]", None] = None,
        **options: FlagValue,
    ) -> Document:
        """Restores one cache type's folder (:meth:`restore` with ``--type``) from the newest
        complete backup holding it taken at or before ``timestamp`` (default: the newest);
        in place, under the safety net (``undo`` reverts it), unless ``target`` is given."""
        return self.restore(
            at=timestamp,
            target=target,
            in_place=target is None,
            type=[cache_type],
            **options,
        )

    # -- machinery ----------------------------------------------------------------------

    def command(self, *args: Any) -> List[str]:
        """The command line that :meth:`run` would execute for ``args``."""
        argv = [self.binary]
        if self.config is not None:
            argv += ["--config", self.config]
        if self.repo is not None:
            argv += ["--repo", self.repo]
        if self.lock_wait is not None:
            argv += ["--lock-wait", str(math.ceil(self.lock_wait))]
        argv.append("--json")
        argv += [_value(a) for a in args]
        return argv

    def _result(
        self,
        name: str,
        argv: List[str],
        code: int,
        out: bytes,
        stderr: str,
        report_codes: Tuple[int, ...],
    ) -> Any:
        doc = _parse(out)
        is_error_doc = isinstance(doc, dict) and "error" in doc
        if code in _COMPLETED or (code in report_codes and doc is not None and not is_error_doc):
            if doc is None:
                raise CacheVaultError(
                    f"cachevault {name} exited with {code} but printed no JSON document: "
                    f"{_last_line(stderr) or out[:200]!r}",
                    exit_code=None,
                    kind="bad_output",
                    stderr=stderr,
                    command=argv,
                )
            if isinstance(doc, dict):
                doc["exit_code"] = code
            return doc
        kind = None
        if isinstance(doc, dict) and isinstance(doc.get("kind"), str):
            kind = doc["kind"]
        if kind is None:
            kind = _KIND_BY_EXIT.get(code, "failed")
        text = None
        if is_error_doc:
            text = str(doc["error"])
        elif code == 5 and isinstance(doc, dict) and doc.get("deferred_reason"):
            text = f"deferred: {doc['deferred_reason']}"
        elif isinstance(doc, dict) and doc.get("errors"):
            errors = doc["errors"]
            text = "; ".join(map(str, errors[:3])) if isinstance(errors, list) else str(errors)
        if not text:
            text = _last_line(stderr) or "no message"
        cls = _CLASS_BY_EXIT.get(code, CacheVaultError)
        where = f"cachevault {name}" if name else "cachevault"
        raise cls(
            f"{where} failed (exit code {code}, {kind}): {text}",
            exit_code=code,
            kind=kind,
            doc=doc,
            stderr=stderr,
            command=argv,
        )

    def _object(self, doc: Any) -> Document:
        if not isinstance(doc, dict):
            raise self._bad_output("expected a JSON object", doc)
        return doc

    def _list(self, doc: Any) -> List[Document]:
        if not isinstance(doc, list):
            raise self._bad_output("expected a JSON array from snapshots", doc)
        return doc

    def _prepare(self, args: Sequence[Any]) -> Tuple[List[str], str, Dict[str, str]]:
        """The command line, the command's name (for messages) and the environment."""
        argv = self.command(*args)
        name = next((str(a) for a in args if not str(a).startswith("-")), "")
        env = dict(os.environ)
        if self.password is not None:
            env["CACHEVAULT_PASSWORD"] = self.password
        return argv, name, env

    def _timed_out(
        self, name: str, argv: List[str], code: Optional[int], out: bytes, err: bytes
    ) -> CacheVaultError:
        stderr = err.decode("utf-8", "replace")
        return CacheVaultError(
            f"cachevault {name} timed out after {self.timeout:g}s"
            + (f": {_last_line(stderr)}" if stderr.strip() else ""),
            exit_code=code,
            kind="timeout",
            doc=_parse(out),
            stderr=stderr,
            command=argv,
        )

    def _bad_output(self, what: str, doc: Any) -> CacheVaultError:
        return CacheVaultError(
            f"cachevault printed an unexpected document: {what}, got {type(doc).__name__}",
            exit_code=None,
            kind="bad_output",
            doc=doc,
        )


class Vault(_Commands):
    """A cachevault repository, driven through the ``cachevault`` binary.

    Every method runs ``cachevault [--config C] [--repo R] [--lock-wait N] --json COMMAND ...``
    and returns the command's JSON document. Exit codes 0 and 1 (completed, with skipped or
    invalid entries) return it, with ``exit_code`` added when it is an object; any other
    exit code raises :class:`CacheVaultError` (:class:`CacheVaultCorrupt` for 3,
    :class:`CacheVaultLocked` for 4, :class:`CacheVaultDeferred` for 5).

    Keyword arguments beyond a method's named ones become flags (see :func:`flags`), so
    flags added to the command line later need no change here.
    """

    def _call(
        self, shape: Callable[[Any], Any], *args: Any, report_codes: Tuple[int, ...] = ()
    ) -> Any:
        return shape(self._run(args, report_codes))

    def run(self, *args: Any) -> Any:
        """Runs ``cachevault ... --json ARGS`` and returns its parsed JSON document.

        Raises:
            CacheVaultError: on any exit code but 0 and 1 (a subclass for 3, 4 and 5), on a
                timeout, or when the output is not one JSON document.
        """
        return self._run(args)

    def _run(self, args: Sequence[Any], report_codes: Tuple[int, ...] = ()) -> Any:
        """:meth:`run`, also returning the documents of ``report_codes`` that are no error."""
        argv, name, env = self._prepare(args)
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
            )
        except OSError as e:
            raise CacheVaultError(
                f"cannot run {argv[0]}: {e}", exit_code=None, kind="no_binary", command=argv
            ) from e
        try:
            out, err = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            out, err = _interrupt(proc)
            raise self._timed_out(name, argv, proc.returncode, out, err) from None
        except BaseException:
            # KeyboardInterrupt and the like: do not leave the child running.
            proc.kill()
            proc.wait()
            raise
        stderr = err.decode("utf-8", "replace")
        return self._result(name, argv, proc.returncode, out, stderr, report_codes)


class AsyncVault(_Commands):
    """:class:`Vault` for asyncio: the same methods, as coroutines, with the same arguments,
    results and exceptions. Each runs the binary with :func:`asyncio.create_subprocess_exec`
    and never blocks the event loop. Cancelling a call sends SIGINT to the command, which
    stops at its next safe point (the repository stays sound), and awaits its exit (SIGKILL
    after a grace period) before the cancellation goes on.
    """

    def _call(
        self, shape: Callable[[Any], Any], *args: Any, report_codes: Tuple[int, ...] = ()
    ) -> Any:
        return self._shaped(shape, args, report_codes)

    async def _shaped(
        self, shape: Callable[[Any], Any], args: Sequence[Any], report_codes: Tuple[int, ...]
    ) -> Any:
        return shape(await self._run(args, report_codes))

    async def run(self, *args: Any) -> Any:
        """Runs ``cachevault ... --json ARGS`` and returns its parsed JSON document (as
        :meth:`Vault.run`)."""
        return await self._run(args)

    async def _run(self, args: Sequence[Any], report_codes: Tuple[int, ...] = ()) -> Any:
        argv, name, env = self._prepare(args)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
            )
        except OSError as e:
            raise CacheVaultError(
                f"cannot run {argv[0]}: {e}", exit_code=None, kind="no_binary", command=argv
            ) from e
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout=self.timeout)
        except asyncio.TimeoutError:
            out, err = await _interrupt_async(proc)
            raise self._timed_out(name, argv, proc.returncode, out, err) from None
        except asyncio.CancelledError:
            # Stop the command at its next safe point and wait for it, then go on cancelling.
            try:
                await _interrupt_async(proc)
            except BaseException:
                if proc.returncode is None:
                    proc.kill()
                raise
            raise
        except BaseException:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
            raise
        stderr = err.decode("utf-8", "replace")
        assert proc.returncode is not None
        return self._result(name, argv, proc.returncode, out, stderr, report_codes)


def _coroutine(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    async def call(self: AsyncVault, *args: Any, **kwargs: Any) -> Any:
        return await method(self, *args, **kwargs)

    return call


#: The command methods, which :class:`AsyncVault` has as coroutine functions.
_COMMAND_METHODS = [
    name
    for name, value in vars(_Commands).items()
    if callable(value) and not name.startswith("_") and name != "command"
]
for _name in _COMMAND_METHODS:
    setattr(AsyncVault, _name, _coroutine(getattr(_Commands, _name)))
del _name


async def _interrupt_async(proc: "asyncio.subprocess.Process") -> Tuple[bytes, bytes]:
    """SIGINT, a grace period, then SIGKILL; returns what the process printed."""
    try:
        proc.send_signal(signal.SIGINT)
    except ProcessLookupError:
        pass
    try:
        return await asyncio.wait_for(proc.communicate(), timeout=INTERRUPT_GRACE_SECONDS)
    except asyncio.TimeoutError:
        try:
            proc.kill()
        except ProcessLookupError:
            pass
        return await proc.communicate()


def _interrupt(proc: "subprocess.Popen[bytes]") -> Tuple[bytes, bytes]:
    """SIGINT, a grace period, then SIGKILL; returns what the process printed."""
    try:
        proc.send_signal(signal.SIGINT)
    except ProcessLookupError:
        pass
    try:
        return proc.communicate(timeout=INTERRUPT_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()


def _parse(out: bytes) -> Any:
    if not out.strip():
        return None
    try:
        return json.loads(out)
    except ValueError:
        return None


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""
