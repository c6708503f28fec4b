# The Farline worker: `python worker.py`, with what its local sandboxes and sources need.
# Built and run by docker-compose.yml (see the README, "Production stack: docker-compose").
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# bubblewrap runs the sandboxes; git fetches manifest and skill sources; rclone and fuse3
# mount buckets into workspaces (the same tools `make install` installs)
RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap git rclone fuse3 ca-certificates \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/farline
COPY pyproject.toml README.md worker.py ./
COPY harness/ harness/
COPY workflows/ workflows/
COPY activities/ activities/
COPY sandbox_providers/ sandbox_providers/
RUN pip install .
# the stack's one-shot job that creates the S3 bucket
COPY deploy/create_bucket.py deploy/create_bucket.py

ENV FARLINE_DATA_DIR=/var/lib/farline
VOLUME ["/var/lib/farline"]

# Root in the container, on purpose: a root worker runs each sandbox as an unprivileged uid
# (FARLINE_SANDBOX_UID, 65534) that cannot read the worker's files, entering a private mount
# namespace first to hand it its workspace; and rclone needs to mount FUSE file systems.
# As a non-root user the worker would still run (bubblewrap maps it into a user namespace),
# but the sandbox would share the worker's uid and buckets could not be mounted.
USER root
CMD ["python", "worker.py"]
