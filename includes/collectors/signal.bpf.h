/* SPDX-License-Identifier: GPL-2.0 */
/* signal: signals generated, in the row of the process that sends them (kill, tgkill, a
 * fault; the kernel's own in the row of the task it runs for), and signals delivered, in the
 * row of the process that takes them, per application. A process that sends many signals, or
 * takes many, shows here before it shows anywhere else.
 * Families: the signal tracepoints (tp_btf as the trampoline, and classic); no probe: the
 * functions behind them were renamed across kernels (__send_signal, __send_signal_locked)
 * and the tracepoints fire on every kernel of the matrix. */

KC_COLLECTOR(signal, signal)

KC_TP_COUNT(kc_signal_generate, signal, signal_generate, kc_signal_count(KC_SIGNAL_GENERATE, 1))
KC_TP_COUNT(kc_signal_deliver, signal, signal_deliver, kc_signal_count(KC_SIGNAL_DELIVER, 1))
