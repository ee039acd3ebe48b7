# The glibc build image: one image serves every bucket (kernel trees, sources and outputs are
# mounted, not baked in). BASE is the locally bootstrapped Debian image (`cargo xtask image`).
# arm64's loader is cross-compiled here: Debian's cross gcc and arm64's multiarch libbpf,
# libelf and zlib beside the host's.
ARG BASE
FROM ${BASE}
RUN dpkg --add-architecture arm64 \
 && apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      clang llvm bpftool libbpf-dev libelf-dev zlib1g-dev gcc libc6-dev pkg-config ca-certificates \
      gcc-aarch64-linux-gnu libc6-dev-arm64-cross libbpf-dev:arm64 libelf-dev:arm64 zlib1g-dev:arm64 \
 && rm -rf /var/lib/apt/lists/*
