# syntax=docker/dockerfile:1
# The operator image: `docker build -t cerebelum-operator .` (this repository's CI has no
# Docker engine; the same install and entrypoint are exercised by the tests).

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY hack/constraints.txt ./hack/constraints.txt
COPY operator ./operator
# The runtime packages at the versions the test suite passed with (hack/constraints.txt).
RUN pip wheel --no-cache-dir --wheel-dir /wheels --constraint hack/constraints.txt .

FROM python:3.11-slim
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="cerebelum-operator" \
      org.opencontainers.image.description="Durable workflows on Kubernetes" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir /wheels/*.whl \
 && useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin cerebelum
USER 10001:10001
EXPOSE 8080
# Reads its settings from the environment (see `cerebelum --help`); the chart sets them.
ENTRYPOINT ["cerebelum"]
CMD ["operator"]
