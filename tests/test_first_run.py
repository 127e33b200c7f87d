"""Issue 20's first run, from outside (`python -m bot` processes): every settings mistake is
one line before `ready`, Azure OpenAI is checked at start and signs in with Entra ID, metrics
are served only on METRICS_PORT, and a second Ctrl-C ends a half-written answer with a note
that the next start replaces."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.slack import FakeSlack
from tests.harness import ROOT, BotProcess, Conversations, bot_env, free_port, nothing_left
from tests.test_process import (
    one_line,
    refused_settings,
    refused_start,
    run_bot_expecting_failure,
    start_process,
)

pytestmark = pytest.mark.slow

BASE = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "OPENAI_API_KEY": "k"}
AZURE = "https://r.openai.azure.com"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {**BASE, "OPENAI_BASE_URL": "api.openai.com/v1"},
            "bot: OPENAI_BASE_URL api.openai.com/v1 has no http:// or https:// scheme: did you "
            "mean https://api.openai.com/v1?",
        ),
        (
            {**BASE, "AZURE_OPENAI_ENDPOINT": AZURE, "OPENAI_BASE_URL": "https://x/v1"},
            "bot: AZURE_OPENAI_ENDPOINT and OPENAI_BASE_URL are both set",
        ),
        (
            {
                "SLACK_BOT_TOKEN": "xoxb-1",
                "SLACK_SIGNING_SECRET": "s",
                "ASSISTANT_API": "chat",
                "AZURE_OPENAI_ENDPOINT": AZURE,
            },
            "bot: missing settings: AZURE_OPENAI_API_KEY (or AZURE_OPENAI_AUTH=entra)",
        ),
        (
            {**BASE, "AZURE_OPENAI_ENDPOINT": AZURE, "OPENAI_API_VERSION": "2024-10-21"},
            "bot: ASSISTANT_API=responses on Azure needs a preview API version from 2025-03-01",
        ),
    ],
)
def test_settings_mistakes_stop_the_bot_with_one_line(
    env: dict[str, str],
    expected: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = refused_settings(env, monkeypatch, capsys)
    assert result.returncode == 2
    assert one_line(result).startswith(expected)


async def test_base_url_without_v1_asks_did_you_mean(
    slack: FakeSlack, openai_fake: FakeOpenAI, tmp_path: Path
) -> None:
    env = bot_env(
        slack=slack,
        openai=openai_fake,
        database_url=f"sqlite:///{tmp_path}/v1.db",
        assistant_api="responses",
    )
    root = openai_fake.base_url.removesuffix("/v1")
    assert await refused_start({**env, "OPENAI_BASE_URL": root}) == (
        f"bot: OPENAI_BASE_URL {root} has no such endpoint (HTTP 404 looking up OPENAI_MODEL): "
        f"did you mean {root}/v1?"
    )


def azure_env(slack: FakeSlack, openai: FakeOpenAI, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = bot_env(
        slack=slack,
        openai=openai,
        database_url=f"sqlite:///{tmp_path}/azure.db",
        assistant_api="chat",
        AZURE_OPENAI_ENDPOINT=openai.base_url.removesuffix("/v1"),
        AZURE_OPENAI_API_KEY=openai.api_key,
        OPENAI_MODEL="my-deployment",
    )
    del env["OPENAI_API_KEY"], env["OPENAI_BASE_URL"]
    env.update(extra)
    return env


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (
            "unreachable",
            "bot: cannot reach Azure OpenAI at AZURE_OPENAI_ENDPOINT {url} (connection refused)",
        ),
        ("wrong key", "bot: Azure OpenAI at {url} rejected the AZURE_OPENAI_API_KEY (HTTP 401"),
        (
            "unknown API version",
            "bot: AZURE_OPENAI_ENDPOINT {url} with OPENAI_API_VERSION 2022-12-01 answered HTTP 404",
        ),
        (
            "unknown assistant",
            "bot: OPENAI_ASSISTANT_ID asst_nope is not an assistant at Azure OpenAI {url}",
        ),
    ],
)
async def test_wrong_azure_settings_stop_the_bot_at_start(
    slack: FakeSlack, openai_fake: FakeOpenAI, tmp_path: Path, case: str, expected: str
) -> None:
    env = azure_env(slack, openai_fake, tmp_path)
    if case == "unreachable":
        env["AZURE_OPENAI_ENDPOINT"] = f"http://127.0.0.1:{free_port()}"
    elif case == "wrong key":
        env["AZURE_OPENAI_API_KEY"] = "wrong"
    elif case == "unknown assistant":
        env.update(ASSISTANT_API="threads", OPENAI_ASSISTANT_ID="asst_nope")
    else:
        env["OPENAI_API_VERSION"] = "2022-12-01"
    line = await refused_start(env)
    assert line.startswith(expected.format(url=env["AZURE_OPENAI_ENDPOINT"])), line


def fake_az_cli(directory: Path, *, token: str | None) -> str:
    """An `az` on PATH that answers `az account get-access-token` as the Azure CLI does (or
    as it does when nobody signed in); returns a PATH with it first."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "az"
    if token is None:
        body = (
            "import sys\n"
            "print(\"ERROR: Please run 'az login' to setup account.\", file=sys.stderr)\n"
            "sys.exit(1)\n"
        )
    else:
        body = (
            "import json, time\n"
            f"print(json.dumps({{'accessToken': {token!r}, 'expires_on': int(time.time()) + 3600,"
            " 'tokenType': 'Bearer', 'subscription': 'sub', 'tenant': 'tenant'}))\n"
        )
    script.write_text(f"#!{sys.executable}\n{body}", encoding="utf-8")
    script.chmod(0o755)
    return f"{directory}:{os.environ.get('PATH', '')}"


async def test_azure_with_entra_id_signs_in_and_answers(
    slack: FakeSlack, openai_fake: FakeOpenAI, tmp_path: Path
) -> None:
    openai_fake.azure_tokens = {"entra-token-1"}
    env = azure_env(
        slack,
        openai_fake,
        tmp_path,
        AZURE_OPENAI_AUTH="entra",
        PATH=fake_az_cli(tmp_path / "bin", token="entra-token-1"),
        AZURE_TOKEN_CREDENTIALS="AzureCliCredential",  # azure-identity's own switch
    )
    del env["AZURE_OPENAI_API_KEY"]
    process = await start_process(env)
    try:
        async with aiohttp.ClientSession() as http:
            talk = Conversations(process.events_url, slack, openai_fake, http)
            question = await talk.mention("hello Entra")
            (answer,) = await talk.wait_for_answers("C0001", question.ts)
        assert answer.text == "Echo: Alice: hello Entra"
        (request,) = openai_fake.requests_to(
            "POST", r"/openai/deployments/my-deployment/chat/completions"
        )
        assert request.headers["Authorization"] == "Bearer entra-token-1"
        assert "api-key" not in {name.lower() for name in request.headers}
        assert openai_fake.requests_to("GET", r"/openai/models"), "checked at start"
        assert await asyncio.to_thread(process.terminate) == 0
        assert "Unclosed" not in process.output(), process.output()
    finally:
        process.stop()


async def test_entra_id_without_a_sign_in_or_the_package_is_one_line(
    slack: FakeSlack, openai_fake: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = azure_env(
        slack,
        openai_fake,
        tmp_path,
        AZURE_OPENAI_AUTH="entra",
        PATH=fake_az_cli(tmp_path / "bin", token=None),
        AZURE_TOKEN_CREDENTIALS="AzureCliCredential",
    )
    del env["AZURE_OPENAI_API_KEY"]
    # azure-identity reads its environment itself: the start in this process sees the same.
    monkeypatch.setenv("PATH", env["PATH"])
    monkeypatch.setenv("AZURE_TOKEN_CREDENTIALS", env["AZURE_TOKEN_CREDENTIALS"])
    no_sign_in = await refused_start(env)
    assert no_sign_in.startswith("bot: Entra ID sign-in for Azure OpenAI failed ("), no_sign_in
    # azure-identity not installed: a module of that name that cannot be imported, first.
    shadow = tmp_path / "shadow" / "azure" / "identity"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('no azure-identity')\n")
    env["PYTHONPATH"] = f"{tmp_path / 'shadow'}:{ROOT}"
    no_package = await asyncio.to_thread(run_bot_expecting_failure, env)
    assert one_line(no_package) == (
        "bot: AZURE_OPENAI_AUTH=entra needs azure-identity: pip install '.[azure]' "
        "(or pip install azure-identity)"
    )


# --------------------------------------------------------------------------- metrics


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, await response.text()


async def test_metrics_only_on_metrics_port_with_healthz(
    slack: FakeSlack, openai_fake: FakeOpenAI, tmp_path: Path
) -> None:
    metrics_port = free_port()
    env = bot_env(
        slack=slack,
        openai=openai_fake,
        database_url=f"sqlite:///{tmp_path}/m.db",
        assistant_api="responses",
        METRICS_PORT=str(metrics_port),
    )
    process = await start_process(env)
    try:
        public = f"http://127.0.0.1:{process.port}"
        private = f"http://127.0.0.1:{metrics_port}"
        assert (await get(f"{public}/metrics"))[0] == 404, "token and cost figures stay private"
        status, text = await get(f"{private}/metrics")
        assert status == 200 and "bot_answers" in text
        assert (await get(f"{private}/healthz"))[0] == 200
    finally:
        process.stop()
    # Without METRICS_PORT no port serves /metrics: test_process.py's test_healthz_answers.


@pytest.mark.parametrize("mode", ["http", "socket"])
async def test_metrics_port_equal_to_port_stops_before_ready(
    slack: FakeSlack, openai_fake: FakeOpenAI, tmp_path: Path, mode: str
) -> None:
    port = str(free_port())
    env = bot_env(
        slack=slack,
        openai=openai_fake,
        database_url=f"sqlite:///{tmp_path}/p.db",
        assistant_api="responses",
        PORT=port,
        METRICS_PORT=port,
    )
    if mode == "socket":
        env["SLACK_APP_TOKEN"] = slack.app_token
        del env["SLACK_SIGNING_SECRET"]
    line = await refused_start(env)
    setting = "HEALTH_PORT or PORT" if mode == "socket" else "PORT"
    assert line.startswith(f"bot: METRICS_PORT {port} is also {setting}"), line


async def test_metrics_port_taken_stops_socket_mode_before_ready(
    slack: FakeSlack, openai_fake: FakeOpenAI, tmp_path: Path
) -> None:
    taken = await asyncio.start_server(lambda r, w: None, "0.0.0.0", 0)
    port = taken.sockets[0].getsockname()[1]
    env = bot_env(
        slack=slack,
        openai=openai_fake,
        database_url=f"sqlite:///{tmp_path}/t.db",
        assistant_api="responses",
        SLACK_APP_TOKEN=slack.app_token,
        METRICS_PORT=str(port),
    )
    del env["SLACK_SIGNING_SECRET"]
    try:
        line = await refused_start(env)
    finally:
        taken.close()
    assert line.startswith(f"bot: cannot listen on METRICS_PORT {port}"), line
    assert slack.socket_connections == 0, "refused before connecting, so before ready"


# --------------------------------------------------------------------------- Ctrl-C


async def wait_for_log(process: BotProcess, text: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in process.output():
        assert time.monotonic() < deadline, f"no {text!r} in the log:\n{process.output()}"
        await asyncio.sleep(0.05)


# The second Ctrl-C is the process's and the delivery's; how each backend resumes a
# half-streamed answer is test_process.py's kill -9 mid-stream, on every backend.
@pytest.mark.parametrize("assistant_api", ["responses"], indirect=True)
async def test_second_ctrl_c_ends_the_live_answer_and_the_next_start_replaces_it(
    slack: FakeSlack, openai_fake: FakeOpenAI, tmp_path: Path, assistant_api: str
) -> None:
    env = bot_env(
        slack=slack,
        openai=openai_fake,
        database_url=f"sqlite:///{tmp_path}/ctrl-c.db",
        assistant_api=assistant_api,
        DELIVERY="stream",
        SHUTDOWN_GRACE_S="60",
    )
    openai_fake.run_s = 4.0  # both Ctrl-Cs come within a second of its first words
    openai_fake.stream_chunks = 8
    process = await start_process(env)
    async with aiohttp.ClientSession() as http:
        talk = Conversations(process.events_url, slack, openai_fake, http)
        question = await talk.mention("a long answer please")
        await slack.wait_for(lambda: bool(slack.calls_to("chat.appendStream")), timeout=60)
        assert process.process is not None
        process.process.send_signal(signal.SIGINT)
        await wait_for_log(process, "finishing 1 answer, press Ctrl-C again to stop now")
        process.process.send_signal(signal.SIGINT)
        started = time.monotonic()
        code = await asyncio.to_thread(process.process.wait, 15)
        assert code == 0, process.output()
        assert time.monotonic() - started < 8, "the second Ctrl-C does not wait the grace"
        assert "stopped: 1 answer interrupted; the next start resumes it" in process.output()
        (half,) = slack.bot_replies("C0001", question.ts)
        assert not half.streaming
        assert half.text.endswith("_(interrupted, will resume)_"), half.text
        restarted = await start_process(env)
        try:
            await talk.wait_for_answers("C0001", question.ts, timeout=60)
            await nothing_left(env["DATABASE_URL"])
        finally:
            restarted.stop()
        replies = slack.bot_replies("C0001", question.ts)
        assert [r.text for r in replies] == ["Echo: Alice: a long answer please"]
        assert replies[0].ts == half.ts, "the resumed answer replaces the interrupted one"
