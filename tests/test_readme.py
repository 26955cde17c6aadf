"""The README's "Try it" works as written: `pysvc dev` in a fresh home, the API/TOKEN/MECH lines it
prints pasted in place of the README's, and the README's ```sh block run by bash."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from pysvc.local.stack import PROJECT_ROOT
from tests.utils.dev import clean_env, running_dev

PASTED = re.compile(r"^(API|TOKEN|MECH)=")
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def try_it_blocks(readme: str) -> list[str]:
    """The ```sh blocks of the README's "Try it" section."""
    section = readme.split("\n## Try it\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```sh\n(.*?)^```$", section, flags=re.M | re.S)


def test_the_readme_walkthrough_works_as_written(tmp_path: Path) -> None:
    blocks = try_it_blocks((PROJECT_ROOT / "README.md").read_text())
    assert blocks, "README.md has no ```sh block under ## Try it"
    script = "\n".join(blocks)
    assert {m.group(1) for m in re.finditer(r"^(API|TOKEN|MECH)=", script, flags=re.M)} == {"API", "TOKEN", "MECH"}
    assert "127.0.0.1:8000/api" not in script and "localhost" not in script, "use $API, not a fixed address"

    with running_dev(tmp_path) as dev:
        output, port = dev.output, dev.port
        printed = re.findall(r"^  ((?:API|TOKEN|MECH)=\S+)$", output, flags=re.M)
        assert [line.split("=", 1)[0] for line in printed] == ["API", "TOKEN", "MECH"], output
        assert f"API=http://127.0.0.1:{port}" in printed

        # The reader's paste: the printed lines instead of the README's placeholders.
        body = "\n".join(line for line in script.splitlines() if not PASTED.match(line))
        run = subprocess.run(["bash", "-c", "set -euo pipefail\n" + "\n".join(printed) + "\n" + body],
                             capture_output=True, text=True, timeout=120, env=clean_env(), cwd=tmp_path, check=False)
        out = run.stdout
        assert run.returncode == 0, f"exit {run.returncode}\n{out}\n{run.stderr}"

        lines = out.splitlines()
        first = lines[0]
        assert re.fullmatch(UUID, first), out  # the free intake's session
        assert re.search(rf'"code":"ACTIVE_SESSION_EXISTS","activeSessionId":"{first}".* 409$', out, flags=re.M), out
        assert re.search(rf'^\[.*"sessionId":"{first}"', out, flags=re.M), out  # the mechanic's queue
        assert lines[3] == "waiting" and re.fullmatch(r'\{.*"code":"WAIVER_NOT_SIGNED".*\} 409', lines[4]), out
        assert lines[5:8] == [f"/session/{first}/waiting-room", "live", "completed"], out
        assert "completed ['created', 'assigned', 'started', 'ended']" in lines, out
        assert "cancelled" in lines, out  # the next session, cancelled
        assert lines[-1] == '{"error":"no active session","code":"NO_ACTIVE_SESSION"} 404', out

        # Every command the block shows an answer for printed that answer (the README's `# …` lines).
        shown = [line[2:] for line in script.splitlines() if line.startswith("# ")]
        for expected in shown:
            if "…" not in expected and not expected[0].isupper():
                assert expected in lines, (expected, out)


def stripe_local_block(heading: str) -> str:
    """The first ```sh block under a heading of docs/stripe-local.md."""
    doc = (PROJECT_ROOT / "docs" / "stripe-local.md").read_text()
    section = doc.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```sh\n(.*?)^```$", section, flags=re.M | re.S)
    assert blocks, f"docs/stripe-local.md has no ```sh block under ## {heading}"
    return str(blocks[0])


def test_paying_without_stripe_keys_shows_stripe_not_configured_not_a_traceback(tmp_path: Path) -> None:
    readme = "\n".join(try_it_blocks((PROJECT_ROOT / "README.md").read_text()))
    helper = re.search(r"^json\(\) \{.*?; \}$", readme, flags=re.M | re.S)
    assert helper, "the README's Try it defines no json() helper"
    script = helper.group(0) + "\n" + stripe_local_block("3. Pay for a session")

    with running_dev(tmp_path) as dev:
        printed = re.findall(r"^  ((?:API|TOKEN|MECH)=\S+)$", dev.output, flags=re.M)
        run = subprocess.run(["bash", "-c", "\n".join(printed) + "\n" + script], capture_output=True, text=True,
                             timeout=120, env=clean_env(), cwd=tmp_path, check=False)

    assert "Traceback" not in run.stdout + run.stderr, run.stderr
    assert '"code": "STRIPE_NOT_CONFIGURED"' in run.stderr, (run.stdout, run.stderr)


DOC_PATH = re.compile(r"`([\w.-]+(?:/[\w.-]+)+\.(?:md|sql|py|toml|json|yml|yaml))`")


def test_the_docs_cite_only_files_in_the_repository() -> None:
    missing = []
    for doc in [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]:
        for cited in DOC_PATH.findall(doc.read_text()):
            if not any((base / cited).exists() for base in (PROJECT_ROOT, doc.parent, PROJECT_ROOT / "pysvc")):
                missing.append(f"{doc.relative_to(PROJECT_ROOT)}: {cited}")
    assert missing == []
