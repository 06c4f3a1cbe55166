# syntax=docker/dockerfile:1
# The kvbackup operator image: `make image` (hack/image.sh) builds it with docker, or
# where no Docker engine runs, with buildah on a minimal Debian base (PYTHON_IMAGE).
# hack/check-image.sh lints this file and replays its install steps outside any engine.

ARG PYTHON_IMAGE=python:3.11-slim-trixie

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
WORKDIR /src
# Dependencies first, from the lock only (exact versions, every file checked against its
# hash), so this layer is rebuilt only when the lock changes.
COPY requirements.lock ./
RUN /opt/venv/bin/pip install --no-deps --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY operator/ operator/
# The package itself, without dependencies: everything it needs came from the lock.
# Then what nothing runs goes: pip and setuptools, which came with the venv (an image that
# never installs anything needs neither, nor the scanners' findings on them), and
# kubernetes.aio, the asyncio copy of the whole Kubernetes client (66 MB with its bytecode)
# that kubernetes 37 ships beside the synchronous client this operator uses.
RUN /opt/venv/bin/pip install --no-deps . \
    && /opt/venv/bin/pip check \
    && /opt/venv/bin/python -c 'import kvbackup.handlers' \
    && rm -r "$(/opt/venv/bin/python -c 'import kubernetes, os; print(os.path.dirname(kubernetes.__file__))')/aio" \
    && /opt/venv/bin/python -m pip uninstall --yes --quiet setuptools pip \
    && /opt/venv/bin/python -c 'import kvbackup.handlers'

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="kvbackup-operator" \
      org.opencontainers.image.description="Backs up and restores Azure Key Vault keys declaratively" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
# The venv holds the dependencies and the kvbackup package; nothing else is copied.
COPY --from=builder /opt/venv /opt/venv
# 65532 is the conventional "nonroot" id; the chart runs the pod as 65532 too. It needs a
# name: kopf asks for the user's name at start-up (getpass.getuser) and fails without one.
RUN echo 'nonroot:x:65532:65532:nonroot:/tmp:/usr/sbin/nologin' >> /etc/passwd \
    && echo 'nonroot:x:65532:' >> /etc/group
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["python", "-m", "kvbackup"]
