# One-word entry points. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install demo test lint bench dev

# bubblewrap runs the sandboxes; git fetches manifest and skill sources; rclone and fuse3 mount buckets;
# podman (with runc and catatonit) is the Docker-API engine the docker provider's tests drive, their
# images made of the host's busybox
SYSTEM_TOOLS := bwrap:bubblewrap git:git rclone:rclone fusermount3:fuse3 \
	podman:podman runc:runc catatonit:catatonit busybox:busybox-static

install:
	@missing=""; for tool in $(SYSTEM_TOOLS); do \
	  command -v $${tool%%:*} >/dev/null || missing="$$missing $${tool#*:}"; done; \
	if [ -n "$$missing" ]; then $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q $$missing; fi
	$(PYTHON) -m pip install -q -e '.[dev,otel]'

demo: install
	farline demo

# three test processes, each with its own Temporal dev server, S3 server and podman service: the
# suite mostly waits on them (about 7 minutes on 2 cores; one process: about 15)
test: install
	$(PYTHON) -m pytest -q -n 3 --dist load

lint: install
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

bench: install
	$(PYTHON) bench/loop_overhead.py
	$(PYTHON) bench/tools.py
	$(PYTHON) bench/snapshot.py
	$(PYTHON) bench/long_run.py
	$(PYTHON) bench/fanout.py
	$(PYTHON) bench/providers.py

dev: install
	farline dev
