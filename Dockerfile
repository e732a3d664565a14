# The turnlog image: the `turnlog` command and its runtime dependencies, nothing else.
# compose.yaml runs it as the one-shot init, the session worker and the projector.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, so a code change does not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir -p turnlog agents schemas streams projections \
    && touch turnlog/__init__.py agents/__init__.py schemas/__init__.py \
             streams/__init__.py projections/__init__.py \
    && pip install . \
    && pip uninstall -y turnlog

COPY turnlog ./turnlog
COPY agents ./agents
COPY schemas ./schemas
COPY streams ./streams
COPY projections ./projections
# The demo agents and their script: the default TURNLOG_AGENTS / TURNLOG_PROVIDER.
COPY examples ./examples
RUN pip install --no-deps . \
    && useradd --system --uid 10001 --no-create-home turnlog

USER turnlog
CMD ["turnlog", "--help"]
