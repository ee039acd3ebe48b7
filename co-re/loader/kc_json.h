/* SPDX-License-Identifier: GPL-2.0 */
/* The report's JSON, written into a growing string. */
#ifndef KC_JSON_H
#define KC_JSON_H

#include <stddef.h>

/* A growing string: `s` is NUL-terminated, or NULL while empty. */
struct kc_buf {
	char *s;
	size_t len, cap;
};

/* Appends printf-style. */
void kc_put(struct kc_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* `n` bytes of `s`, as they are. */
void kc_put_bytes(struct kc_buf *b, const char *s, size_t n);
/* `v` in decimal, without a format string to parse (one per counter of every row). */
void kc_put_u64(struct kc_buf *b, unsigned long long v);
/* `s` as a JSON string (names and reasons come from an object's BTF, which any file brings). */
void kc_put_string(struct kc_buf *b, const char *s);

#endif
