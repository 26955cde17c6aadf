"""`pysvc` help: bare commands print help, `--version`, every command and flag is described and
shows its default, `serve --help` names the required settings and `.env`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pysvc import __version__
from pysvc.cli import build_parser

PYSVC = [sys.executable, "-m", "pysvc"]
COMMANDS = [[], ["stack"], ["stack", "start"], ["stack", "stop"], ["stack", "status"], ["stack", "env"],
            ["migrate"], ["serve"], ["dev"]]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PYSVC, *args], capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("command", [[], ["stack"]])
def test_a_bare_command_prints_its_help(command: list[str]) -> None:
    r = run(*command)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"usage: pysvc {' '.join(command)}".rstrip())
    assert "error" not in r.stderr


def test_version() -> None:
    r = run("--version")
    assert r.returncode == 0
    assert r.stdout.strip() == f"pysvc {__version__}"


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "pysvc")
def test_every_command_has_its_own_help(command: list[str]) -> None:
    r = run(*command, "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"usage: pysvc {' '.join(command)}".rstrip())
    assert "--debug" in r.stdout


def test_stack_start_help_is_specific() -> None:
    out = run("stack", "start", "--help").stdout
    assert "never restarted" in out and "PYSVC_DB_PORT" in out and "DATABASE_URL" in out


def test_serve_help_names_the_required_settings_and_dotenv() -> None:
    out = run("serve", "--help").stdout
    for name in (".env", "SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_JWT_SECRET", "SUPABASE_JWKS_URL"):
        assert name in out, name
    flat = " ".join(out.split())
    assert "(default: 127.0.0.1)" in flat and "(default: 8000)" in flat


def _parsers() -> list[tuple[str, object]]:
    found = []
    stack = [("pysvc", build_parser())]
    while stack:
        name, parser = stack.pop()
        found.append((name, parser))
        for action in parser._actions:  # type: ignore[attr-defined]
            choices = getattr(action, "choices", None)
            if isinstance(choices, dict):
                stack.extend((f"{name} {sub}", p) for sub, p in choices.items())
    return found


def test_every_flag_and_subcommand_has_help_text() -> None:
    parsers = _parsers()
    assert {name for name, _ in parsers} >= {"pysvc stack start", "pysvc migrate", "pysvc dev"}
    for name, parser in parsers:
        assert parser.description, name  # type: ignore[attr-defined]
        for action in parser._actions:  # type: ignore[attr-defined]
            assert action.help, f"{name}: {action.option_strings or action.dest}"
            for choice in getattr(action, "_choices_actions", []):
                assert choice.help, f"{name} {choice.dest}"
