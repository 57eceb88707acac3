# syntax=docker/dockerfile:1.7
# One image for every Mutualis service; the container runs `mutualis serve <service>`.
#
# Stages: `build` turns the project into a wheel and installs it with its dependencies into a
# virtualenv; `runtime` copies only that virtualenv (no compiler, no sources, no pip cache);
# `dev` (for Tilt) adds the sources on PYTHONPATH and restarts the service when they change.

# Exact tag of the slim Debian 12 image; pin its digest in your registry mirror too.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/mutualis
COPY pyproject.toml README.md ./
COPY libs/ libs/
COPY services/ services/
RUN /opt/mutualis/bin/pip install --upgrade pip \
 && /opt/mutualis/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/mutualis/bin/pip install /wheels/mutualis-*.whl

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="mutualis" \
      org.opencontainers.image.description="Mutualis services: identity, parapheur, archive, notifications" \
      org.opencontainers.image.licenses="EUPL-1.2"
# Same uid/gid as the chart's securityContext (runAsUser 10001).
RUN groupadd --system --gid 10001 mutualis \
 && useradd --system --uid 10001 --gid mutualis --home-dir /home/mutualis --create-home \
      --shell /usr/sbin/nologin mutualis
COPY --from=build /opt/mutualis /opt/mutualis
ENV PATH=/opt/mutualis/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MUTUALIS_HTTP_HOST=0.0.0.0 \
    MUTUALIS_LOG_FORMAT=json
# The root filesystem is read-only in the cluster; /tmp is an emptyDir.
WORKDIR /tmp
USER 10001:10001
EXPOSE 8001 8002 8003 8004
ENTRYPOINT ["mutualis", "serve"]
CMD ["--help"]

# Development image for Tilt: the synced sources in /app shadow the installed wheel, and
# watchfiles restarts `mutualis serve <service>` when a Python file changes.
FROM runtime AS dev
USER root
RUN /opt/mutualis/bin/pip install --no-cache-dir watchfiles==1.3.0
COPY --chown=10001:10001 libs/ /app/libs/
COPY --chown=10001:10001 services/ /app/services/
ENV PYTHONPATH=/app/libs:/app/services
USER 10001:10001
ENTRYPOINT ["sh", "-c", "exec watchfiles --filter python \"mutualis serve $0\" /app/libs /app/services"]
