# syntax=docker/dockerfile:1
# The kvbackup operator image: `make image` (hack/image.sh) builds it with docker, or
# where no Docker engine runs, with buildah on minimal Debian bases it makes itself
# (PYTHON_IMAGE, BUILDER_IMAGE). `make image-check` lints this file and replays the
# builder stage without an engine.

# Debian bookworm, whose own Python is 3.11: the Python the project is developed and
# tested with, and the one of the Debian bases hack/image.sh makes.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# The builder strips the wheels' native libraries with binutils' strip: installed here
# on a python:*-slim base; hack/image.sh's builder base has it.
ARG BUILDER_IMAGE=${PYTHON_IMAGE}

FROM ${BUILDER_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
# hadolint ignore=DL3008
RUN command -v strip >/dev/null \
    || { apt-get update && apt-get install -y --no-install-recommends binutils \
         && rm -rf /var/lib/apt/lists/*; }
RUN python3 -m venv /opt/venv
WORKDIR /src
# Dependencies first, from the locks only (exact versions, every file checked against
# its hash), so this layer is rebuilt only when a lock changes. requirements-build.lock
# pins what builds the package itself (setuptools).
COPY requirements.lock requirements-build.lock ./
RUN /opt/venv/bin/pip install --no-deps --require-hashes \
    -r requirements.lock -r requirements-build.lock
COPY pyproject.toml README.md ./
COPY operator/ operator/
# The package itself, built with the pinned setuptools, without dependencies: everything
# it needs came from the lock. Then what nothing runs goes: kubernetes.aio, the asyncio
# copy of the whole Kubernetes client (66 MB with its bytecode) that kubernetes 37 ships
# beside the synchronous client this operator uses; the native libraries' symbol tables
# and debug information (14 MB; Python's tracebacks never use them); and pip and
# setuptools (an image that never installs anything needs neither, nor the scanners'
# findings on them).
RUN /opt/venv/bin/pip install --no-deps --no-build-isolation . \
    && /opt/venv/bin/pip check \
    && rm -r "$(/opt/venv/bin/python -c 'import kubernetes, os; print(os.path.dirname(kubernetes.__file__))')/aio" \
    && find /opt/venv \( -name '*.so' -o -name '*.so.*' \) -type f -exec strip --strip-unneeded {} + \
    && /opt/venv/bin/python -m pip uninstall --yes --quiet setuptools pip \
    && /opt/venv/bin/python -c 'import kvbackup.handlers'

# The root file system: the base trimmed to what the operator runs (hack/image_prune.py
# says what goes and why; it keeps bytecode for what `python -m kvbackup` and the
# `kvbackup` command line import as they start), the venv and the operator's user. 65532 is the conventional
# "nonroot" id; the chart runs the pod as 65532 too. It needs a name: kopf asks for the
# user's name at start-up (getpass.getuser) and fails without one.
FROM ${PYTHON_IMAGE} AS runtime
COPY --from=builder /opt/venv /opt/venv
COPY hack/image_prune.py /tmp/
RUN python3 -I -B /tmp/image_prune.py /opt/venv runpy kvbackup.__main__ kvbackup.handlers kvbackup.cli \
    && rm /tmp/image_prune.py \
    && echo 'nonroot:x:65532:65532:nonroot:/tmp:/usr/sbin/nologin' >> /etc/passwd \
    && echo 'nonroot:x:65532:' >> /etc/group

# One layer, so that what the runtime stage removed is not still in a lower one.
FROM scratch
# hadolint ignore=DL3067
COPY --from=runtime / /
LABEL org.opencontainers.image.title="kvbackup-operator" \
      org.opencontainers.image.description="Backs up and restores Azure Key Vault keys declaratively" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["python", "-m", "kvbackup"]
