/* SPDX-License-Identifier: GPL-2.0 */
/* What libbpf said while kc-loader loaded: captured, not printed (kc_log.c). */
#ifndef KC_LOG_H
#define KC_LOG_H

#include <stddef.h>

/* Captures libbpf's messages from now on; `debug`: its debug messages too (--verbose). */
void kc_log_capture(int debug);
/* Forgets what was captured (before a load whose messages are wanted alone). */
void kc_log_reset(void);
/* Adds text as if libbpf had printed it (a program's own verifier log). */
void kc_log_append(const char *text);
/* Why the last load failed, in one line: the verifier's verdict, else libbpf's last word. */
void kc_log_reason(char *out, size_t n);
/* The captured messages' last n - 1 bytes. */
void kc_log_tail(char *out, size_t n);

#endif
