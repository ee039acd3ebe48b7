# The glibc build image: one image serves every bucket (kernel trees, sources and outputs are
# mounted, not baked in). BASE is the locally bootstrapped Debian image (`cargo xtask image`).
ARG BASE
FROM ${BASE}
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      clang llvm bpftool libbpf-dev libelf-dev zlib1g-dev gcc libc6-dev pkg-config ca-certificates \
 && rm -rf /var/lib/apt/lists/*
