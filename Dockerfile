# syntax=docker/dockerfile:1.7
# One image for every Mutualis service; the container runs `mutualis serve <service>`.
#
# Stages: `build` turns the project into a wheel and installs it with its dependencies into a
# virtualenv; `runtime` copies only that virtualenv (no compiler, no sources, no pip cache);
# `dev` (for Tilt) adds the sources on PYTHONPATH and restarts the service when they change.
#
# Nothing is installed that a lock does not pin with hashes (`pip --require-hashes`): the
# dependencies and the build backend come from requirements/dev.lock, of which
# deploy/image/lock_subset.py keeps, line for line, what the runtime (or the build) needs, so
# pytest, mypy and ruff stay out of the image and no version or hash is written twice.

# Exact tag of the slim Debian 12 image; pin its digest in your registry mirror too.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Dependencies first (their layer survives a change of the sources).
COPY requirements/dev.lock requirements/dev.lock
COPY deploy/image/lock_subset.py deploy/image/lock_subset.py
COPY pyproject.toml README.md ./
RUN python deploy/image/lock_subset.py requirements/dev.lock --group build > /tmp/build.lock \
 && python deploy/image/lock_subset.py requirements/dev.lock --group runtime > /tmp/runtime.lock \
 && python -m venv /opt/build-tools \
 && /opt/build-tools/bin/pip install --require-hashes --no-deps -r /tmp/build.lock \
 && python -m venv /opt/mutualis \
 && /opt/mutualis/bin/pip install --require-hashes --no-deps -r /tmp/runtime.lock
COPY libs/ libs/
COPY services/ services/
# The project's own wheel, built here from these sources (without build isolation: hatchling
# comes from the lock above), then `pip check`: the lock's subset lacks nothing.
RUN /opt/build-tools/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
 && /opt/mutualis/bin/pip install --no-deps /wheels/mutualis-*.whl \
 && /opt/mutualis/bin/pip check
# The official SEDA 2.2 XSDs the archive validates exports and imports against, where it reads
# them (<venv>/share/mutualis/seda): the pinned wheel, checked by its sha256, as `make` does.
COPY infra/scripts/fetch-seda-xsd.sh infra/scripts/fetch-seda-xsd.sh
RUN PYTHON=/opt/mutualis/bin/python bash infra/scripts/fetch-seda-xsd.sh

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
# watchfiles is not a dependency of the project: its own small lock (its dependency, anyio, is
# already installed from the project's lock).
COPY deploy/image/dev-tools.lock /tmp/dev-tools.lock
RUN /opt/mutualis/bin/pip install --no-cache-dir --require-hashes --no-deps -r /tmp/dev-tools.lock \
 && /opt/mutualis/bin/pip check \
 && rm /tmp/dev-tools.lock
COPY --chown=10001:10001 libs/ /app/libs/
COPY --chown=10001:10001 services/ /app/services/
ENV PYTHONPATH=/app/libs:/app/services
USER 10001:10001
ENTRYPOINT ["sh", "-c", "exec watchfiles --filter python \"mutualis serve $0\" /app/libs /app/services"]
