# syntax=docker/dockerfile:1
# slack-assistant-bot: `docker build -t slack-assistant-bot .` (docs/deploy.md).
# Stage 1 builds wheels for the bot and its dependencies and installs them into a virtual
# environment; stage 2 copies only that environment (no wheels, pip cache or sources) and
# runs it as an unprivileged user.

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY bot ./bot
# The bot from its own wheel, with the dependency versions pyproject.toml allows (DL3013).
# hadolint ignore=DL3013
RUN pip wheel --wheel-dir /wheels . \
 && python -m venv --without-pip /opt/bot \
 && pip --python /opt/bot/bin/python install --no-index --find-links /wheels slack-assistant-bot

FROM python:3.11-slim
ENV PATH=/opt/bot/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=build /opt/bot /opt/bot
RUN groupadd --system --gid 10001 bot \
 && useradd --system --uid 10001 --gid 10001 --home-dir /data --shell /usr/sbin/nologin bot \
 && install -d -o bot -g bot -m 0700 /data
# Numeric, so an orchestrator (Kubernetes runAsNonRoot) can see that it is not root.
USER 10001:10001
# The default DATABASE_URL (sqlite:///bot.db) is a file here: mount a volume on /data to keep
# it, or point DATABASE_URL at PostgreSQL (compose.yml does).
WORKDIR /data
VOLUME ["/data"]
# Socket Mode (set SLACK_APP_TOKEN: the first-try path) needs no inbound port; PORT is then
# only where GET /healthz answers for the HEALTHCHECK. In HTTP mode Slack posts to PORT.
ENV PORT=3000
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-m", "bot.healthcheck"]
STOPSIGNAL SIGTERM
CMD ["python", "-m", "bot"]
