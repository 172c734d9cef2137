"""Every command README.md shows works as written. The commands are read from the
README (its bash blocks and inline code) and must equal the list below, so a command
added there fails here until it is listed, and run or said why not.

They run as a person from a fresh clone would type them: through ``make``, in a shell
where ``TANSO_ENV`` and ``SECRET_KEY`` are unset (the settings default to production).
The only difference is where the data lives: ``DATABASE_URL`` / ``REDIS_URL`` name this
test's PostgreSQL database and Redis (as CI and any deployment set them), instead of
the embedded servers under ``.data/``."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.sites.models import Site

from apps.accounts.models import Organization, User
from apps.apikeys.models import ApiKey
from tests.events.conftest import (  # noqa: F401  (fixtures: the price catalog)
    _fresh_process_caches,
    catalog,
    catalog_file,
)

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
COMMAND = re.compile(r"^(?:[A-Z_]+=\S+ )*(?:make|curl|python3?|\.venv/bin/python)\b")

# Every command of the README, where it first appears (continuation lines joined).
DEMO_CURL = (
    "curl -X POST http://localhost:8080/api/v1/client/events "
    '-H "Authorization: Bearer sk_test_67d9fb04f0344036ba92ecc973f1445a" '
    '-H "Content-Type: application/json" '
    """-d '{"eventName": "chat_completion", "customerReferenceId": "cus_123", """
    '"featureKey": "ai_summarization", '
    '"costInput": {"model": "gpt-4o", "modelProvider": "openai", '
    """"inputTokens": 1200, "outputTokens": 300}}'"""
)
CREATESUPERUSER = 'make manage ARGS="createsuperuser"'
BOOTSTRAP = 'make manage ARGS="bootstrap --email you@x.io --org Acme"'
CREATE_KEY = (
    'make manage ARGS="create_api_key --org Acme --env live --kind obs '
    '--scopes events.write usage.read"'
)
EXPECTED = [
    DEMO_CURL,  # run below against a live server holding the demo data
    "make run",  # the server and the suite themselves: exercised by hand and by CI
    "make test",
    "make run PYTHON=/usr/bin/python3.12",
    "make clean-data",  # deletes .data/
    'make test PYTEST_ARGS="-n 0"',
    "PORT=9000 make run",
    'make manage ARGS="..."',  # the form of the three below
    CREATESUPERUSER,  # run below
    BOOTSTRAP,  # run below
    "make bench",
    "make lint",  # CI runs these four
    "make format",
    "make typecheck",
    "make lock",  # re-resolves the pins from PyPI
    "make lint typecheck",
    CREATE_KEY,  # run below
    "make manage",
]


def _block_commands(block: str) -> list[str]:
    """Lines of a bash block: "\\" continuations and quotes spanning lines joined,
    comments dropped, spaces collapsed."""
    commands, current = [], ""
    for line in re.sub(r"\\\n\s*", " ", block).splitlines():
        current = f"{current} {line.strip()}" if current else line.strip()
        if current.count("'") % 2:
            continue  # a quoted argument (the curl's JSON body) goes on
        command = "" if current.startswith("#") else re.sub(r"\s+#[^'\"]*$", "", current)
        if command.strip():
            commands.append(re.sub(r"\s+", " ", command.strip()))
        current = ""
    return commands


def readme_commands() -> list[str]:
    """The shell commands of README.md in reading order: its ```bash blocks and the
    inline code spans that start like a command (``make ...``, ``curl ...``)."""
    text = README.read_text()
    found: list[str] = []
    for match in re.finditer(r"```bash\n(.*?)```|```.*?```|`([^`]+)`", text, flags=re.S):
        if match.group(1) is not None:
            found += _block_commands(match.group(1))
        elif match.group(2) is not None:
            span = re.sub(r"\s+", " ", match.group(2))
            if COMMAND.match(span) and " " in span:  # not the bare word `make`
                found.append(span)
    return list(dict.fromkeys(found))  # each once, where it first appears


def test_the_readme_shows_exactly_the_commands_listed_here():
    assert readme_commands() == EXPECTED


def _shell_env() -> dict[str, str]:
    """A newcomer's shell: no TANSO_ENV, no SECRET_KEY, not inside a make (``make test``
    exports MAKELEVEL, and a nested make prints "Entering/Leaving directory" around its
    output); this test's data stores."""
    db = settings.DATABASES["default"]
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TANSO_", "TEST_", "MAKE")) and k != "MFLAGS"
    }
    env.pop("SECRET_KEY", None)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env["DATABASE_URL"] = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    env["REDIS_URL"] = settings.REDIS_URL
    return env


def _make(command: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    if shutil.which("make") is None:
        pytest.fail("make is not installed")
    return subprocess.run(
        shlex.split(command),
        cwd=ROOT,
        env=_shell_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.django_db(transaction=True)
def test_bootstrap_and_create_api_key_as_written():
    made = _make(BOOTSTRAP)
    assert made.returncode == 0, made.stderr
    answer = json.loads(made.stdout[made.stdout.index("{") :])
    assert answer["user"] == "you@x.io"
    assert answer["organization"]["name"] == "Acme"
    assert Organization.objects.filter(name="Acme").count() == 1
    issued = _make(CREATE_KEY)
    assert issued.returncode == 0, issued.stderr
    key = re.search(r"obs_[0-9a-f]{32}", issued.stdout)
    assert key is not None, issued.stdout
    stored = ApiKey.objects.filter(kind="obs").order_by("-created_at").first()
    assert stored is not None and stored.hint == key.group(0)[-4:]
    assert stored.environment.kind == "live"
    assert set(stored.scopes) == {"events.write", "usage.read"}
    # `make manage` migrated first and named the Site after SITE_URL, not example.com.
    assert Site.objects.get(pk=settings.SITE_ID).name == "Tanso"


def _expect(fd: int, wanted: str, seen: list[str], deadline: float) -> None:
    while wanted not in "".join(seen):
        assert time.monotonic() < deadline, "".join(seen)
        ready, _, _ = select.select([fd], [], [], 1)
        if ready:
            try:
                seen.append(os.read(fd, 1024).decode(errors="replace"))
            except OSError:  # the child closed the terminal
                break


@pytest.mark.django_db(transaction=True)
def test_createsuperuser_prompts_in_a_terminal_as_written():
    """createsuperuser asks for an email and a password on a terminal: run it on one."""
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        shlex.split(CREATESUPERUSER),
        cwd=ROOT,
        env=_shell_env(),
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        start_new_session=True,  # the terminal becomes the command's own (getpass)
        close_fds=True,
    )
    os.close(secondary)
    seen: list[str] = []
    deadline = time.monotonic() + 600
    try:
        _expect(primary, "Email address:", seen, deadline)
        os.write(primary, b"root@example.io\n")
        _expect(primary, "Password:", seen, deadline)
        os.write(primary, b"an-unusual-passphrase-4417\n")
        _expect(primary, "Password (again):", seen, deadline)
        os.write(primary, b"an-unusual-passphrase-4417\n")
        _expect(primary, "Superuser created", seen, deadline)
        assert proc.wait(60) == 0, "".join(seen)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(primary)
    user = User.objects.get(email="root@example.io")
    # (Its hash is development's hasher, which the test settings do not load.)
    assert user.is_superuser and user.is_staff and user.has_usable_password()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("catalog")
def test_the_walkthrough_curl_as_written_against_the_demo_data(live_server):
    """`make run` loads the demo data; the README's curl then records an event."""
    loaded = _make('make manage ARGS="load_demo"')
    assert loaded.returncode == 0, loaded.stderr
    if shutil.which("curl") is None:
        pytest.fail("curl is not installed")
    command = DEMO_CURL.replace("http://localhost:8080", live_server.url)
    result = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["costSource"] == "catalog", body
