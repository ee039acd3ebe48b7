# The musl build image: the glibc image's BPF toolchain (so BPF objects are byte-identical) plus
# musl-gcc and static zlib, elfutils' libelf and libbpf built with it from Debian's source
# packages, installed under /opt/kc-musl, from which `kc-loader` is linked fully static.
# arm64's are built the same way with Debian's aarch64 cross gcc and musl-dev:arm64's specs
# (what musl-gcc does for the host), under /opt/kc-musl-arm64.
# BASE is the locally bootstrapped Debian image (`cargo xtask image`).
ARG BASE
FROM ${BASE}
RUN sed -n 's/^deb /deb-src /p' /etc/apt/sources.list > /etc/apt/sources.list.d/deb-src.list \
 && dpkg --add-architecture arm64 \
 && apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      clang llvm bpftool libbpf-dev libelf-dev zlib1g-dev gcc libc6-dev pkg-config ca-certificates \
      musl-tools make dpkg-dev bzip2 xz-utils file \
      gcc-aarch64-linux-gnu linux-libc-dev-arm64-cross musl-dev:arm64 \
 && rm -rf /var/lib/apt/lists/*

ENV KC_MUSL_PREFIX=/opt/kc-musl
# One layer: sources fetched, built (once per architecture), installed and deleted. The build
# log goes to a file that is printed only when a step fails, so a failing image build shows why.
RUN set -eu; mkdir -p /src; cd /src; \
    apt-get update -q; apt-get source -q zlib elfutils libbpf >/tmp/kc-musl.log 2>&1; \
    rm -rf /var/lib/apt/lists/*; \
    fail() { tail -n 60 /tmp/kc-musl.log; echo "musl image: $1 failed" >&2; exit 1; }; \
    # build PREFIX CC ASM SOURCES DEB-ARCH [CONFIGURE-HOST]: zlib, libelf and libbpf for one
    # architecture, in SOURCES (amd64 builds in /src itself, as it did before arm64 came, so
    # its libraries keep their bytes; arm64 in a pristine copy made first).
    build() { P="$1"; CC="$2"; ASM="$3"; W="$4"; DEBARCH="$5"; HOST="${6:-}"; \
      mkdir -p "$P/include" "$P/lib"; \
      # musl's compiler sees only musl's headers: the kernel's UAPI headers are copied next to them.
      cp -r /usr/include/linux /usr/include/asm-generic "$P/include/"; cp -r "$ASM" "$P/include/asm"; \
      cd "$W"/zlib-*/; \
      { CC="$CC" CFLAGS=-O2 ./configure --static --prefix="$P" && make -j"$(nproc)" libz.a && make install; } \
        >>/tmp/kc-musl.log 2>&1 || fail "zlib ($P)"; \
      # Only libelf is needed: the checks for argp, fts and obstack (used by elfutils' tools,
      # which musl lacks) are answered for configure, and only libelf/ is built.
      cd "$W"/elfutils-*/; \
      { CC="$CC" CFLAGS="-O2 -I$P/include" LDFLAGS="-L$P/lib" ./configure ${HOST:+--host="$HOST"} --disable-nls \
          --disable-debuginfod --disable-libdebuginfod --without-bzlib --without-lzma --without-zstd \
          ac_cv_search_argp_parse='none required' ac_cv_search_fts_close='none required' \
          ac_cv_search__obstack_free='none required' \
        && make -C libelf -j"$(nproc)" libelf.a; } >>/tmp/kc-musl.log 2>&1 || fail "libelf ($P)"; \
      cp libelf/libelf.a "$P/lib/"; cp libelf/libelf.h libelf/gelf.h libelf/nlist.h "$P/include/"; \
      # libbpf's default CFLAGS carry -Werror, and musl's NGROUPS_MAX differs from the kernel's.
      cd "$W"/libbpf-*/src; \
      make -j"$(nproc)" CC="$CC" CFLAGS="-g -O2 -Wall" BUILD_STATIC_ONLY=y PREFIX="$P" \
        LIBDIR="$P/lib" EXTRA_CFLAGS="-I$P/include" PKG_CONFIG_LIBDIR="$P/lib/pkgconfig" install \
        >>/tmp/kc-musl.log 2>&1 || fail "libbpf ($P)"; \
      # What was built, for the build-info of every musl cell.
      for d in /src/*/; do (cd "$d" && echo "$(dpkg-parsechangelog -S Source) $(dpkg-parsechangelog -S Version)"); done \
        > "$P/versions"; \
      echo "musl $(dpkg-query -W -f='${Version}' "musl-dev:$DEBARCH")" >> "$P/versions"; cat "$P/versions"; }; \
    cp -r /src /src-arm64; \
    build "$KC_MUSL_PREFIX" musl-gcc /usr/include/x86_64-linux-gnu/asm /src amd64; \
    build "$KC_MUSL_PREFIX-arm64" "aarch64-linux-gnu-gcc -specs=/usr/lib/aarch64-linux-musl/musl-gcc.specs" \
      /usr/aarch64-linux-gnu/include/asm /src-arm64 arm64 aarch64-linux-musl; \
    cd /; rm -rf /src /src-arm64 /tmp/kc-musl.log
