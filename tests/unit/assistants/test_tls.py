"""Every OpenAI client of the process verifies OpenAI's certificate, with one CA store loaded
once: the start-up check's client and the backend's (loading it cost ~20 ms a client)."""

from __future__ import annotations

import ssl

import openai

from bot.assistants.factory import make_client, tls_context
from bot.settings import load_settings

ENV = {
    "SLACK_BOT_TOKEN": "xoxb-1-tls",
    "SLACK_SIGNING_SECRET": "s" * 32,
    "OPENAI_API_KEY": "sk-tls",
    "ASSISTANT_API": "responses",
    "DATABASE_URL": "sqlite:///tls.db",
}


def _verifies_with(client: openai.AsyncOpenAI) -> ssl.SSLContext:
    transport = client._client._transport  # the SDK's aiohttp transport
    context = transport.ssl_context  # type: ignore[attr-defined]
    assert isinstance(context, ssl.SSLContext)
    return context


def test_openai_clients_verify_certificates_with_one_ca_store() -> None:
    settings = load_settings(ENV, dotenv_path=None)
    backend = _verifies_with(make_client(settings))
    azure = _verifies_with(
        make_client(
            load_settings(
                {
                    **ENV,
                    "AZURE_OPENAI_ENDPOINT": "https://x.openai.azure.com",
                    "AZURE_OPENAI_API_KEY": "k",
                },
                dotenv_path=None,
            )
        )
    )
    assert backend is azure is tls_context()
    assert backend.verify_mode is ssl.CERT_REQUIRED and backend.check_hostname
