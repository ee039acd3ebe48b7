// SPDX-License-Identifier: GPL-2.0
/* The report's JSON. See kc_json.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kc_json.h"

void kc_put(struct kc_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0)
			return;
		if (b->s && b->len + n < b->cap) {
			b->len += n;
			return;
		}
		b->cap = (b->cap + n + 1) * 2;
		b->s = realloc(b->s, b->cap);
		if (!b->s)
			return;
	}
}

void kc_put_bytes(struct kc_buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		char *grown = realloc(b->s, (b->len + n + 1) * 2);

		if (!grown)
			return;
		b->s = grown;
		b->cap = (b->len + n + 1) * 2;
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = 0;
}

void kc_put_u64(struct kc_buf *b, unsigned long long v)
{
	char digits[20];
	int n = sizeof(digits);

	do
		digits[--n] = (char)('0' + v % 10);
	while (v /= 10);
	kc_put_bytes(b, digits + n, sizeof(digits) - n);
}

/* `s` as a JSON string: counter names and reasons come from an object's BTF, which any object
 * file brings. Runs of plain characters are copied whole (a collection writes a name per
 * counter of every row). */
void kc_put_string(struct kc_buf *b, const char *s)
{
	kc_put_bytes(b, "\"", 1);
	while (*s) {
		size_t plain = 0;
		unsigned char c;

		while (s[plain] && s[plain] != '"' && s[plain] != '\\' && (unsigned char)s[plain] >= 0x20)
			plain++;
		kc_put_bytes(b, s, plain);
		s += plain;
		if (!*s)
			break;
		c = (unsigned char)*s++;
		if (c == '"' || c == '\\')
			kc_put(b, "\\%c", c);
		else
			kc_put(b, "\\u%04x", c);
	}
	kc_put_bytes(b, "\"", 1);
}

