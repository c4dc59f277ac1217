# syntax=docker/dockerfile:1
# One image for every scantrace component: `docker run IMAGE gateway|worker|sink|api|...`.
# Built by docker-compose.yml (and for deploy/k8s). The build context is an allowlist
# (.dockerignore): pyproject.toml, README.md and the five packages, nothing else.

# -- build: wheels for scantrace and every dependency (all ship manylinux wheels for 3.11,
#    so no compiler is needed; the sources stay out of the runtime image)
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY ingest ./ingest
COPY processors ./processors
COPY sinks ./sinks
COPY tracing ./tracing
COPY scantrace ./scantrace
RUN pip wheel --wheel-dir /wheels '.[report]'

# -- runtime. The report's image (docker-compose.yml profile `report`, deploy/k8s
#    report-cronjob.yaml) is the same with EXTRAS=[report] and APT_PACKAGES="chromium
#    fonts-dejavu-core": charts, xlsx, and the browser that prints the PDF.
FROM python:3.11-slim
ARG EXTRAS=""
ARG APT_PACKAGES=""
# NUMBA_CACHE_DIR: the worker's compiled loops (processors/horizon.py) are cached here, a
# writable place also under a read-only root file system (deploy/k8s mounts /tmp)
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NUMBA_CACHE_DIR=/tmp/numba
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    if [ -n "$APT_PACKAGES" ]; then \
      apt-get update && apt-get install -y --no-install-recommends $APT_PACKAGES \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
    && pip install --no-index --find-links /wheels "scantrace$EXTRAS" \
    && useradd --system --uid 10001 --user-group --create-home --home-dir /home/scantrace scantrace \
    && install -d -o scantrace -g scantrace /var/lib/scantrace
# The working folder is the components' state: Faust keeps its table stores here (the
# worker's volume in docker-compose.yml, its PersistentVolumeClaim in deploy/k8s).
WORKDIR /var/lib/scantrace
USER 10001
EXPOSE 8080 8090 9101 9102
ENTRYPOINT ["scantrace"]
CMD ["--help"]
