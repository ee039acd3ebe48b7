# The musl build image: the glibc image's BPF toolchain (so BPF objects are byte-identical) plus
# musl-gcc and static zlib, elfutils' libelf and libbpf built with it from Debian's source
# packages, installed under /opt/kc-musl, from which `kc-loader` is linked fully static.
# BASE is the locally bootstrapped Debian image (`cargo xtask image`).
ARG BASE
FROM ${BASE}
RUN sed -n 's/^deb /deb-src /p' /etc/apt/sources.list > /etc/apt/sources.list.d/deb-src.list \
 && apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      clang llvm bpftool libbpf-dev libelf-dev zlib1g-dev gcc libc6-dev pkg-config ca-certificates \
      musl-tools make dpkg-dev bzip2 xz-utils file \
 && rm -rf /var/lib/apt/lists/*

ENV KC_MUSL_PREFIX=/opt/kc-musl
# One layer: sources fetched, built, installed and deleted. The build log goes to a file that is
# printed only when a step fails, so a failing image build shows why.
RUN set -eu; P="$KC_MUSL_PREFIX"; mkdir -p "$P/include" "$P/lib" /src; cd /src; \
    apt-get update -q; apt-get source -q zlib elfutils libbpf >/tmp/kc-musl.log 2>&1; \
    rm -rf /var/lib/apt/lists/*; \
    fail() { tail -n 60 /tmp/kc-musl.log; echo "musl image: $1 failed" >&2; exit 1; }; \
    # musl-gcc sees only musl's headers: the kernel's UAPI headers are copied next to them.
    cp -r /usr/include/linux /usr/include/asm-generic "$P/include/"; \
    cp -r /usr/include/x86_64-linux-gnu/asm "$P/include/"; \
    cd /src/zlib-*/; \
    { CC=musl-gcc CFLAGS=-O2 ./configure --static --prefix="$P" && make -j"$(nproc)" libz.a && make install; } \
      >>/tmp/kc-musl.log 2>&1 || fail zlib; \
    # Only libelf is needed: the checks for argp, fts and obstack (used by elfutils' tools,
    # which musl lacks) are answered for configure, and only libelf/ is built.
    cd /src/elfutils-*/; \
    { CC=musl-gcc CFLAGS="-O2 -I$P/include" LDFLAGS="-L$P/lib" ./configure --disable-nls \
        --disable-debuginfod --disable-libdebuginfod --without-bzlib --without-lzma --without-zstd \
        ac_cv_search_argp_parse='none required' ac_cv_search_fts_close='none required' \
        ac_cv_search__obstack_free='none required' \
      && make -C libelf -j"$(nproc)" libelf.a; } >>/tmp/kc-musl.log 2>&1 || fail libelf; \
    cp libelf/libelf.a "$P/lib/"; cp libelf/libelf.h libelf/gelf.h libelf/nlist.h "$P/include/"; \
    # libbpf's default CFLAGS carry -Werror, and musl's NGROUPS_MAX differs from the kernel's.
    cd /src/libbpf-*/src; \
    make -j"$(nproc)" CC=musl-gcc CFLAGS="-g -O2 -Wall" BUILD_STATIC_ONLY=y PREFIX="$P" \
      LIBDIR="$P/lib" EXTRA_CFLAGS="-I$P/include" PKG_CONFIG_LIBDIR="$P/lib/pkgconfig" install \
      >>/tmp/kc-musl.log 2>&1 || fail libbpf; \
    # What was built, for the build-info of every musl cell.
    for d in /src/*/; do (cd "$d" && echo "$(dpkg-parsechangelog -S Source) $(dpkg-parsechangelog -S Version)"); done \
      > "$P/versions"; \
    echo "musl $(dpkg-query -W -f='${Version}' musl-dev)" >> "$P/versions"; \
    cd /; rm -rf /src /tmp/kc-musl.log; cat "$P/versions"
