// SPDX-License-Identifier: GPL-2.0
/* A test build of the netdev collector for `cargo xtask bench overhead --slowed-auto`: the
 * collector as shipped, plus one more trampoline-family program on its transmit event (a role
 * of kc_netdev_xmit, so it attaches whenever that family is chosen for the event). It reads
 * the clock a thousand times per packet (tens of microseconds: beyond the noise
 * even of a machine busy compiling), so auto, which takes tp_btf where it loads, costs
 * far more than the forced tracepoint family: the bench must fail on it. Never shipped. */
#include "kc_core.h"
#include "collectors/netdev.bpf.h"

SEC("tp_btf/net_dev_xmit")
int BPF_PROG(kc_netdev_xmit__trampoline_slowed)
{
	/* A helper call is never optimized out; the counters stay the shipped collector's. */
	for (int i = 0; i < 1024; i++)
		bpf_ktime_get_ns();
	return 0;
}
