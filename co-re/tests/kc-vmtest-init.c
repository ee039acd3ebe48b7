// SPDX-License-Identifier: GPL-2.0
/*
 * kc-vmtest-init: PID 1 of the load-test guests (`cargo xtask vmtest`). It mounts what the
 * loader needs, asks the installed release's kc-select which objects to load (with this
 * kernel's BTF, and as for a kernel without it, in each legacy mode), runs
 * `/kc-loader --json --attach trampoline,probe,tracepoint,auto` on every object chosen, with
 * itself as each pass's workload, prints the reports between markers on the console, and
 * powers the guest off.
 *
 *   /init            as PID 1
 *   /init workload   the workload kc-loader runs while the objects are attached
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/major.h>
#include <linux/raid/md_p.h>
#include <linux/raid/md_u.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/swap.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_OBJECTS 128
/* Where kc-install put the release (vmtest installs it into the initramfs). */
#define KC_CURRENT "/usr/libexec/kernel-collector/current"

static void say(const char *msg)
{
	fprintf(stderr, "kc-vmtest: %s\n", msg);
}

static void mount_all(void)
{
	static const struct {
		const char *src, *dst, *type;
	} mounts[] = {
		{ "proc", "/proc", "proc" },
		{ "sysfs", "/sys", "sysfs" },
		{ "devtmpfs", "/dev", "devtmpfs" },
		{ "tmpfs", "/tmp", "tmpfs" },
		{ "tracefs", "/sys/kernel/tracing", "tracefs" },
		{ "debugfs", "/sys/kernel/debug", "debugfs" },
		{ "bpffs", "/sys/fs/bpf", "bpf" },
		{ "cgroup2", "/sys/fs/cgroup", "cgroup2" },
	};

	for (size_t i = 0; i < sizeof(mounts) / sizeof(mounts[0]); i++) {
		mkdir(mounts[i].dst, 0755);
		if (mount(mounts[i].src, mounts[i].dst, mounts[i].type, 0, NULL) && errno != EBUSY)
			fprintf(stderr, "kc-vmtest: mount %s: %s\n", mounts[i].dst, strerror(errno));
	}
}

static void loopback_up(void)
{
	struct ifreq ifr = { 0 };
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	if (fd < 0)
		return;
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) == 0) {
		ifr.ifr_flags |= IFF_UP;
		ioctl(fd, SIOCSIFFLAGS, &ifr);
	}
	close(fd);
}

/* The NVMe drives vmtest attaches, by role: qemu gives drive i the serial "kc<i>"
 * (xtask/src/vmtest/mod.rs, DRIVES). Controllers probe asynchronously, so names follow no
 * order and the last may appear after init starts: each is found by its serial. */
enum drive { SWAP_DRIVE, BLOCK_DRIVE, MD_DRIVE_0, MD_DRIVE_1, EXT4_DRIVE, XFS_DRIVE, BTRFS_DRIVE, DRIVES };
static char drive_paths[DRIVES][32];

static int find_drives(void)
{
	int found = 0;
	DIR *d = opendir("/sys/block");
	struct dirent *e;

	while (d && (e = readdir(d))) {
		char path[300], serial[32] = "";
		int fd, n, i;

		if (strncmp(e->d_name, "nvme", 4))
			continue;
		snprintf(path, sizeof(path), "/sys/block/%s/device/serial", e->d_name);
		fd = open(path, O_RDONLY);
		n = fd >= 0 ? read(fd, serial, sizeof(serial) - 1) : -1;
		if (fd >= 0)
			close(fd);
		if (n > 0 && sscanf(serial, "kc%d", &i) == 1 && i >= 0 && i < DRIVES) {
			snprintf(drive_paths[i], sizeof(drive_paths[i]), "/dev/%.24s", e->d_name);
			found++;
		}
	}
	if (d)
		closedir(d);
	return found;
}

/* PID 1 waits for the drives and hands their names to the processes it starts in
 * KC_DRIVES ("path:path:..."): the workload must not count its own lookups. */
static void wait_for_drives(void)
{
	char list[DRIVES * 32] = "";

	for (int tries = 0; find_drives() < DRIVES; tries++) {
		if (tries == 100) {
			say("not every NVMe drive appeared within 10 s");
			break;
		}
		usleep(100 * 1000);
	}
	for (int i = 0; i < DRIVES; i++) {
		strcat(list, drive_paths[i]);
		strcat(list, ":");
	}
	setenv("KC_DRIVES", list, 1);
}

static void import_drives(void)
{
	const char *list = getenv("KC_DRIVES");

	for (int i = 0; list && i < DRIVES; i++) {
		const char *end = strchr(list, ':');

		if (!end)
			break;
		snprintf(drive_paths[i], sizeof(drive_paths[i]), "%.*s", (int)(end - list), list);
		list = end + 1;
	}
}

static const char *drive(enum drive i)
{
	return drive_paths[i][0] ? drive_paths[i] : "/dev/kc-drive-missing";
}

/* The modules vmtest put in /modules (MD, file systems), named so that name order loads
 * each after what it depends on. */
static void load_modules(void)
{
	struct dirent **names;
	int n = scandir("/modules", &names, NULL, alphasort);

	for (int i = 0; i < n; i++) {
		char path[300];
		int fd;

		int hidden = names[i]->d_name[0] == '.'; /* ".", ".." */

		snprintf(path, sizeof(path), "/modules/%s", names[i]->d_name);
		free(names[i]);
		if (hidden)
			continue;
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || (syscall(SYS_finit_module, fd, "", 0) && errno != EEXIST))
			fprintf(stderr, "kc-vmtest: loading %s: %s\n", path, strerror(errno));
		if (fd >= 0)
			close(fd);
	}
	if (n >= 0)
		free(names);
}

/* RAID1 over the third and fourth NVMe drives as /dev/md0, without a superblock and marked
 * clean (what `mdadm --build --assume-clean` does): no resync I/O under the counters. */
static void md_assemble(void)
{
	const char *members[] = { drive(MD_DRIVE_0), drive(MD_DRIVE_1) };
	mdu_array_info_t array = {
		.major_version = 0, .minor_version = 90, .level = 1, .raid_disks = 2,
		.md_minor = 0, .not_persistent = 1, .state = 1 << MD_SB_CLEAN,
	};
	int fd;

	mknod("/dev/md0", S_IFBLK | 0600, makedev(MD_MAJOR, 0));
	fd = open("/dev/md0", O_RDWR);
	if (fd < 0 || ioctl(fd, SET_ARRAY_INFO, &array))
		goto fail;
	for (int i = 0; i < 2; i++) {
		mdu_disk_info_t disk = { .number = i, .raid_disk = i,
					 .state = (1 << MD_DISK_ACTIVE) | (1 << MD_DISK_SYNC) };
		struct stat st;

		if (stat(members[i], &st))
			goto fail;
		disk.major = major(st.st_rdev);
		disk.minor = minor(st.st_rdev);
		if (ioctl(fd, ADD_NEW_DISK, &disk))
			goto fail;
	}
	if (ioctl(fd, RUN_ARRAY, NULL))
		goto fail;
	close(fd);
	return;
fail:
	fprintf(stderr, "kc-vmtest: assembling /dev/md0: %s\n", strerror(errno));
	if (fd >= 0)
		close(fd);
}

/* The file systems the host formatted on their drives. */
static const char *const filesystems[] = { "ext4", "xfs", "btrfs" };

static void mount_filesystems(void)
{
	mkdir("/fs", 0755);
	for (int i = 0; i < 3; i++) {
		const char *dev = drive(EXT4_DRIVE + i);
		char dir[32];

		snprintf(dir, sizeof(dir), "/fs/%s", filesystems[i]);
		mkdir(dir, 0755);
		if (mount(dev, dir, filesystems[i], 0, NULL))
			fprintf(stderr, "kc-vmtest: mounting %s on %s: %s\n", filesystems[i], dev, strerror(errno));
	}
}

static char page_buf[4096];

/* What the storage child does: one flush of the MD device, and on each file system a file
 * created, written, fsynced, closed, opened again and read. */
static void storage_io(void)
{
	int fd = open("/dev/md0", O_RDWR);

	if (fd >= 0) {
		if (pwrite(fd, page_buf, sizeof(page_buf), 0) < 0 || fsync(fd))
			say("writing /dev/md0 failed");
		close(fd);
	}
	for (int i = 0; i < 3; i++) {
		char path[48];

		snprintf(path, sizeof(path), "/fs/%s/kc-file", filesystems[i]);
		fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0644);
		if (fd < 0)
			continue; /* not mounted: the kernel lacks it */
		if (write(fd, page_buf, sizeof(page_buf)) < 0 || fsync(fd))
			fprintf(stderr, "kc-vmtest: writing %s: %s\n", path, strerror(errno));
		close(fd);
		fd = open(path, O_RDONLY);
		if (fd >= 0) {
			if (read(fd, page_buf, sizeof(page_buf)) < 0)
				fprintf(stderr, "kc-vmtest: reading %s: %s\n", path, strerror(errno));
			close(fd);
		}
	}
}

/* In a child: its calls stay out of the workload's own row. */
static void storage(void)
{
	pid_t pid = fork();

	if (pid == 0) {
		storage_io();
		_exit(0);
	}
	if (pid > 0)
		waitpid(pid, NULL, 0);
}

/* Files: create, write, read, fsync and friends, unlink. */
static void file_io(void)
{
	char buf[8192];
	int fd = open("/tmp/kc-file", O_CREAT | O_RDWR | O_TRUNC, 0644);
	void *map;

	if (fd < 0)
		return;
	memset(buf, 'k', sizeof(buf));
	for (int i = 0; i < 16; i++)
		if (write(fd, buf, sizeof(buf)) < 0)
			break;
	fsync(fd);
	fdatasync(fd);
	sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
	syncfs(fd);
	map = mmap(NULL, sizeof(buf), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map != MAP_FAILED) {
		((char *)map)[0] = 'c';
		msync(map, sizeof(buf), MS_SYNC);
		munmap(map, sizeof(buf));
	}
	lseek(fd, 0, SEEK_SET);
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	close(fd);
	sync();
	open("/tmp/does-not-exist", O_RDONLY); /* an error to count */
	close(-1);
	unlink("/tmp/kc-file");
	/* vfs_create: an open's create goes to the file system directly, a mknod through it. */
	if (mknod("/tmp/kc-node", S_IFREG | 0644, 0) == 0)
		unlink("/tmp/kc-node");
}

/* Processes: fork, exec, exit. */
static void processes(void)
{
	for (int i = 0; i < 4; i++) {
		pid_t pid = fork();

		if (pid == 0) {
			execl("/init", "/init", "noop", (char *)NULL);
			_exit(127);
		}
		if (pid > 0)
			waitpid(pid, NULL, 0);
	}
}

static void mounts(void)
{
	mkdir("/mnt", 0755);
	if (mount("tmpfs", "/mnt", "tmpfs", 0, "size=1m") == 0)
		umount("/mnt");
	umount("/not-a-mount-point"); /* an error to count */
}

/* System V shared memory: one segment made, attached, detached and removed; then each call
 * once with what it must refuse (no such key, no such id, no attachment there). */
static void shm(void)
{
	struct shmid_ds ds;
	int id = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
	void *at = id >= 0 ? shmat(id, NULL, 0) : (void *)-1;

	if (at != (void *)-1)
		shmdt(at);
	shmctl(id, IPC_RMID, NULL);
	shmget(0x4b43, 4096, 0);
	shmat(-1, NULL, 0);
	shmdt((void *)4096);
	shmctl(-1, IPC_STAT, &ds);
}

/* Page faults: 64 anonymous pages touched, and one page of the NVMe drive mapped after its
 * page cache was dropped (read from the device: a major fault). */
static void page_faults(void)
{
	char *anon = mmap(NULL, 64 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int fd = open(drive(BLOCK_DRIVE), O_RDONLY);
	volatile char *dev;

	if (anon != MAP_FAILED) {
		for (int i = 0; i < 64; i++)
			anon[i * 4096] = 1;
		munmap(anon, 64 * 4096);
	}
	if (fd < 0) {
		say("no block I/O drive: no major fault");
		return;
	}
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	dev = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
	if (dev != MAP_FAILED) {
		(void)dev[0];
		munmap((void *)dev, 4096);
	}
	close(fd);
}

static void on_usr1(int sig)
{
	(void)sig;
}

/* Signals: three SIGUSR1s raised and handled. */
static void signals(void)
{
	signal(SIGUSR1, on_usr1);
	for (int i = 0; i < 3; i++)
		raise(SIGUSR1);
}

/* A TCP round trip on loopback, IPv4 or IPv6: 4,096 bytes one way, 16 the other, every socket
 * closed. */
static void tcp_round_trip(int family)
{
	struct sockaddr_in6 addr6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	struct sockaddr_in addr4 = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sockaddr *addr = family == AF_INET6 ? (struct sockaddr *)&addr6 : (struct sockaddr *)&addr4;
	socklen_t size = family == AF_INET6 ? sizeof(addr6) : sizeof(addr4), len = size;
	char buf[4096] = "kernel-collector";
	int srv = socket(family, SOCK_STREAM, 0), cli, conn;

	if (srv < 0 || bind(srv, addr, size) || listen(srv, 1) || getsockname(srv, addr, &len))
		return;
	cli = socket(family, SOCK_STREAM, 0);
	if (connect(cli, addr, size) == 0) {
		conn = accept(srv, NULL, NULL);
		if (write(cli, buf, sizeof(buf)) != sizeof(buf) || read(conn, buf, sizeof(buf)) != sizeof(buf) ||
		    write(conn, buf, 16) != 16 || read(cli, buf, sizeof(buf)) != 16)
			say("the tcp round trip fell short");
		close(conn);
	}
	close(cli);
	close(srv);
}

/* Sockets: a TCP round trip on loopback over IPv4 and one over IPv6, and a UDP round trip,
 * whose two sockets are left open in `udp` (see the workload). */
static void sockets(int udp[2])
{
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(addr);
	char buf[4096] = "kernel-collector";

	tcp_round_trip(AF_INET);
	tcp_round_trip(AF_INET6);
	udp[0] = socket(AF_INET, SOCK_DGRAM, 0);
	udp[1] = socket(AF_INET, SOCK_DGRAM, 0);
	if (bind(udp[0], (struct sockaddr *)&addr, sizeof(addr)) ||
	    getsockname(udp[0], (struct sockaddr *)&addr, &len) ||
	    sendto(udp[1], buf, 64, 0, (struct sockaddr *)&addr, sizeof(addr)) != 64 ||
	    recv(udp[0], buf, sizeof(buf), 0) != 64)
		say("the udp round trip fell short");
}

/* DNS: a resolver of its own on 127.0.0.1:53 and [::1]:53 (sockets of this process, no child
 * to count), asked seven questions over UDP through every call the dns collector traces, one
 * left unanswered and sent again, one left unanswered on a socket this process's exit closes,
 * and three over TCP (dns_tcp). Every message is DNS_MSG bytes:
 * "<2 letters>.kc.test". */
#define DNS_MSG 28
#define DNS_TXT 16

static void dns_question(unsigned char *m, unsigned id, const char *first, unsigned type)
{
	static const unsigned char tail[] = { 2, 'k', 'c', 4, 't', 'e', 's', 't', 0 };
	unsigned char head[12] = { id >> 8, id & 0xFF, 0x01 /* RD */, 0, 0, 1 };

	memcpy(m, head, sizeof(head));
	m[12] = 2;
	memcpy(m + 13, first, 2);
	memcpy(m + 15, tail, sizeof(tail));
	m[24] = type >> 8;
	m[25] = type & 0xFF;
	m[26] = 0;
	m[27] = 1; /* class IN */
}

/* The resolver's side: the next question on `srv`, answered with `rcode` (no records), or
 * dropped when `rcode` is negative. */
static void dns_serve(int srv, int rcode)
{
	struct sockaddr_storage from;
	socklen_t len = sizeof(from);
	unsigned char m[512];

	if (recvfrom(srv, m, sizeof(m), 0, (struct sockaddr *)&from, &len) != DNS_MSG) {
		say("the resolver got no question");
		return;
	}
	if (rcode < 0)
		return;
	m[2] |= 0x80; /* QR: a response */
	m[3] = 0x80 | rcode; /* RA */
	if (sendto(srv, m, DNS_MSG, 0, (struct sockaddr *)&from, len) != DNS_MSG)
		say("the resolver could not answer");
}

static void dns_expect(int fd, int rcode)
{
	unsigned char m[512];

	if (recv(fd, m, sizeof(m), 0) != DNS_MSG || (m[3] & 0x0F) != rcode)
		say("a dns answer fell short");
}

/* DNS over TCP, as the libcs ask again when an answer over UDP came truncated: the resolver's
 * listener on 127.0.0.1:53, one connection, three questions each after its 2-byte length: A by
 * sendmsg of [length, message] and its answer by recvmsg likewise (musl's calls), then AAAA,
 * answered NXDOMAIN, and A in one writev of [length, AAAA, length, A] (glibc's), the first
 * answer read with its length in one buffer, the second as glibc does: its length, then it. */
static void dns_serve_tcp(int conn, int rcode)
{
	unsigned char m[2 + DNS_MSG];

	if (recv(conn, m, sizeof(m), MSG_WAITALL) != sizeof(m) || m[1] != DNS_MSG) {
		say("the resolver got no question over tcp");
		return;
	}
	m[4] |= 0x80;
	m[5] = 0x80 | rcode;
	if (send(conn, m, sizeof(m), 0) != sizeof(m))
		say("the resolver could not answer over tcp");
}

static void dns_tcp(int tcp[3])
{
	struct sockaddr_in v4 = { .sin_family = AF_INET, .sin_port = htons(53),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int srv = socket(AF_INET, SOCK_STREAM, 0), cli = socket(AF_INET, SOCK_STREAM, 0), conn = -1;
	unsigned char len[2] = { 0, DNS_MSG }, q[2 + DNS_MSG] = { 0, DNS_MSG }, q2[DNS_MSG], m[512];
	struct iovec out[2] = { { len, 2 }, { q + 2, DNS_MSG } }, in[2] = { { len, 2 }, { m, sizeof(m) } };
	struct iovec both[4] = { { len, 2 }, { q + 2, DNS_MSG }, { len, 2 }, { q2, DNS_MSG } };
	struct msghdr query = { .msg_iov = out, .msg_iovlen = 2 }, answer = { .msg_iov = in, .msg_iovlen = 2 };
	int reuse = 1;

	tcp[0] = conn;
	tcp[1] = cli;
	tcp[2] = srv;
	/* The last run's accepted socket, closed first, waits out TIME_WAIT on port 53. */
	setsockopt(srv, SOL_SOCKET, SO_REUSEADDR, &reuse, sizeof(reuse));
	if (srv < 0 || cli < 0 || bind(srv, (struct sockaddr *)&v4, sizeof(v4)) || listen(srv, 1) ||
	    connect(cli, (struct sockaddr *)&v4, sizeof(v4)) || (tcp[0] = conn = accept(srv, NULL, NULL)) < 0) {
		say("the resolver could not take a tcp connection");
		return;
	}
	dns_question(q + 2, 7, "tc", 1);
	if (sendmsg(cli, &query, 0) != sizeof(q))
		say("a dns question over tcp was not sent");
	dns_serve_tcp(conn, 0);
	if (recvmsg(cli, &answer, 0) != sizeof(q) || (m[3] & 0x0F) != 0)
		say("a dns answer over tcp fell short");
	dns_question(q + 2, 8, "t6", 28);
	dns_question(q2, 10, "gv", 1);
	if (writev(cli, both, 4) != 2 * sizeof(q))
		say("two dns questions over tcp were not sent");
	dns_serve_tcp(conn, 3);
	if (read(cli, m, sizeof(m)) != sizeof(q) || (m[5] & 0x0F) != 3)
		say("a second dns answer over tcp fell short");
	dns_serve_tcp(conn, 0);
	if (read(cli, len, 2) != 2 || len[1] != DNS_MSG || read(cli, m, DNS_MSG) != DNS_MSG || (m[3] & 0x0F) != 0)
		say("a third dns answer over tcp fell short");
}

static int dns_socket(int family)
{
	struct timeval two_seconds = { .tv_sec = 2 };
	int fd = socket(family, SOCK_DGRAM, 0);

	/* A resolver that never answers must not hang the guest. */
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &two_seconds, sizeof(two_seconds));
	return fd;
}

static void dns(void)
{
	struct sockaddr_in v4 = { .sin_family = AF_INET, .sin_port = htons(53),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sockaddr_in6 v6 = { .sin6_family = AF_INET6, .sin6_port = htons(53), .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	int srv4 = dns_socket(AF_INET), srv6 = dns_socket(AF_INET6), c1, c2, c3;
	unsigned char q[2][DNS_MSG], m[512];
	struct iovec iov[2] = { { q[0], DNS_MSG }, { q[1], DNS_MSG } };
	struct mmsghdr batch[2] = { { .msg_hdr = { .msg_iov = &iov[0], .msg_iovlen = 1 } },
				    { .msg_hdr = { .msg_iov = &iov[1], .msg_iovlen = 1 } } };
	struct msghdr one = { .msg_iov = &iov[0], .msg_iovlen = 1 };
	struct iovec in = { m, sizeof(m) };
	struct msghdr reply = { .msg_iov = &in, .msg_iovlen = 1 };
	struct pollfd wait;

	if (bind(srv4, (struct sockaddr *)&v4, sizeof(v4)) || bind(srv6, (struct sockaddr *)&v6, sizeof(v6))) {
		say("the resolver could not bind port 53");
		return;
	}
	/* Connected, IPv4: write and read (as Go's own resolver asks), then A and TXT in one
	 * sendmmsg (as glibc asks A and AAAA), their answers by recv (recvfrom with no address). */
	c1 = dns_socket(AF_INET);
	connect(c1, (struct sockaddr *)&v4, sizeof(v4));
	dns_question(q[0], 1, "ok", 1);
	if (write(c1, q[0], DNS_MSG) != DNS_MSG)
		say("a dns question was not sent");
	dns_serve(srv4, 0);
	if (read(c1, m, sizeof(m)) != DNS_MSG || (m[3] & 0x0F) != 0)
		say("a dns answer by read fell short");
	dns_question(q[0], 2, "sf", 1);
	dns_question(q[1], 3, "tx", DNS_TXT);
	if (sendmmsg(c1, batch, 2, 0) != 2)
		say("a dns batch was not sent");
	dns_serve(srv4, 2);
	dns_serve(srv4, 0);
	dns_expect(c1, 2);
	dns_expect(c1, 0);
	/* Not connected: sendto the server and recvfrom; then a question never answered, sent
	 * again after its timeout, and the socket closed with it pending. */
	c2 = dns_socket(AF_INET);
	dns_question(q[0], 4, "nx", 1);
	sendto(c2, q[0], DNS_MSG, 0, (struct sockaddr *)&v4, sizeof(v4));
	dns_serve(srv4, 3);
	dns_expect(c2, 3);
	dns_question(q[0], 5, "to", 1);
	for (int i = 0; i < 2; i++) {
		sendto(c2, q[0], DNS_MSG, 0, (struct sockaddr *)&v4, sizeof(v4));
		dns_serve(srv4, -1);
		wait = (struct pollfd){ .fd = c2, .events = POLLIN };
		if (poll(&wait, 1, 20) != 0)
			say("an unanswered dns question got an answer");
	}
	close(c2);
	/* Connected, IPv6: sendmsg and recvmsg, an AAAA question. */
	c3 = dns_socket(AF_INET6);
	connect(c3, (struct sockaddr *)&v6, sizeof(v6));
	dns_question(q[0], 6, "ok", 28);
	if (sendmsg(c3, &one, 0) != DNS_MSG)
		say("a dns question over ipv6 was not sent");
	dns_serve(srv6, 0);
	if (recvmsg(c3, &reply, 0) != DNS_MSG || (m[3] & 0x0F) != 0)
		say("a dns answer over ipv6 fell short");
	/* Then one the resolver drops, on a socket left open: the workload's exit closes it. */
	dns_question(q[0], 9, "ex", 28);
	if (send(c3, q[0], DNS_MSG, 0) != DNS_MSG)
		say("a dns question left at exit was not sent");
	dns_serve(srv6, -1);
	close(c1);
	close(srv6);
	close(srv4);
}

/* Block I/O that bypasses the page cache, on the second NVMe drive qemu provides. */
static void block_io(void)
{
	void *buf;
	int fd = open(drive(BLOCK_DRIVE), O_RDWR | O_DIRECT);

	if (fd < 0 || posix_memalign(&buf, 4096, 65536)) {
		say("no block I/O drive: block I/O skipped");
		return;
	}
	memset(buf, 'b', 65536);
	for (int i = 0; i < 8; i++) {
		if (pwrite(fd, buf, 65536, (off_t)i * 65536) < 0 || pread(fd, buf, 65536, (off_t)i * 65536) < 0)
			break;
	}
	fsync(fd);
	close(fd);
	free(buf);
	/* And through the page cache (adds, dirtied pages and buffers, then writeback). */
	fd = open(drive(BLOCK_DRIVE), O_RDWR);
	if (fd < 0)
		return;
	memset(page_buf, 'p', sizeof(page_buf));
	for (int i = 0; i < 16; i++)
		if (pwrite(fd, page_buf, sizeof(page_buf), 1 << 20 | (off_t)i * sizeof(page_buf)) < 0)
			break;
	fsync(fd);
	for (int i = 0; i < 16; i++)
		if (pread(fd, page_buf, sizeof(page_buf), 2 << 20 | (off_t)i * sizeof(page_buf)) < 0)
			break;
	close(fd);
}

/* Swap on the first NVMe drive: write a swap header (what mkswap does) and enable it. */
static void swap_on(void)
{
	char page[4096] = { 0 };
	unsigned int *info = (unsigned int *)(page + 1024);
	int fd = open(drive(SWAP_DRIVE), O_RDWR);
	off_t size;

	if (fd < 0) {
		say("no swap drive: swap skipped");
		return;
	}
	size = lseek(fd, 0, SEEK_END);
	info[0] = 1;                          /* version */
	info[1] = (unsigned int)(size / 4096) - 1; /* last page */
	memcpy(page + 4096 - 10, "SWAPSPACE2", 10);
	if (pwrite(fd, page, sizeof(page), 0) != sizeof(page))
		say("writing the swap header failed");
	fsync(fd);
	close(fd);
	if (swapon(drive(SWAP_DRIVE), 0))
		fprintf(stderr, "kc-vmtest: swapon: %s\n", strerror(errno));
}

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY);
	int ok = fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text);

	if (fd >= 0)
		close(fd);
	return ok ? 0 : -1;
}

/* The OOM child's memory cgroup, one per workload run: a killed child's swap can stay
 * charged to its cgroup (swap cache nobody maps), and a later run in the same cgroup would
 * then find its swap allowance spent and page nothing out. */
static char oom_memcg[64];

/* The path of the file `name` of the OOM child's cgroup, in `path`. */
static const char *memcg_file(char path[128], const char *name)
{
	snprintf(path, 128, "%s/%s", oom_memcg, name);
	return path;
}

/* Writes `text` to the file `name` of the OOM child's cgroup. */
static int write_memcg(const char *name, const char *text)
{
	char path[128];

	return write_file(memcg_file(path, name), text);
}

/* A memory cgroup small enough that its OOM comes in a few megabytes: 24 MiB of memory and
 * 8 MiB of swap. Returns whether it is there (else the OOM is the whole guest's). */
static int small_memcg(void)
{
	snprintf(oom_memcg, sizeof(oom_memcg), "/sys/fs/cgroup/kc-oom-%d", getpid());
	mkdir(oom_memcg, 0755);
	if (write_file("/sys/fs/cgroup/cgroup.subtree_control", "+memory") ||
	    write_memcg("memory.max", "24M")) {
		say("no memory cgroup: the OOM fills the guest");
		return 0;
	}
	write_memcg("memory.swap.max", "8M");
	return 1;
}

/* A number the OOM child's cgroup shows in file `name`; -1 where it cannot be read. */
static long memcg_value(const char *name)
{
	char path[128];
	long value = -1;
	FILE *f;

	f = fopen(memcg_file(path, name), "r");
	if (f) {
		if (fscanf(f, "%ld", &value) != 1)
			value = -1;
		fclose(f);
	}
	return value;
}

/* Makes the OOM cgroup reclaim `bytes`: memory.reclaim (5.19), else memory.high lowered by
 * that much below what it holds and raised again (a write to memory.high reclaims down to
 * it before it returns; it never kills). */
static void memcg_reclaim(long bytes)
{
	char text[32];
	long current;

	snprintf(text, sizeof(text), "%ld", bytes);
	if (!write_memcg("memory.reclaim", text) || errno != ENOENT)
		return;
	current = memcg_value("memory.current");
	if (current > bytes) {
		snprintf(text, sizeof(text), "%ld", current - bytes);
		write_memcg("memory.high", text);
		write_memcg("memory.high", "max");
	}
}

#define CHUNK (4 << 20)

/* CHUNK bytes of anonymous memory, every page written; exits the child where there is none. */
static char *touched_chunk(void)
{
	char *p = mmap(NULL, CHUNK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		_exit(2);
	for (size_t i = 0; i < CHUNK; i += 4096)
		p[i] = 1;
	return p;
}

/* Reads every page of a chunk: a page out in swap is swapped in. */
static void read_chunk(const char *p)
{
	volatile char sum = 0;

	for (size_t i = 0; i < CHUNK; i += 4096)
		sum += p[i];
}

/* Pages a chunk out to swap for real. MADV_PAGEOUT unmaps its pages and starts their write;
 * they stay in the swap cache (reading them back then reads no swap) until reclaim drops
 * them once written, and MADV_PAGEOUT does not look at them again. So the cgroup reclaims
 * until mincore (which counts the swap cache) finds none of them resident. Says so where
 * some stay. */
static void page_out(char *p)
{
	unsigned char resident[CHUNK / 4096];
	size_t left = 0;

	madvise(p, CHUNK, MADV_PAGEOUT);
	for (int tries = 0; tries < 200; tries++) {
		if (mincore(p, CHUNK, resident))
			return;
		left = 0;
		for (size_t i = 0; i < sizeof(resident); i++)
			left += resident[i] & 1;
		if (!left)
			return;
		madvise(p, CHUNK, MADV_PAGEOUT); /* pages still mapped, if any */
		memcg_reclaim(CHUNK);
		usleep(20000);
	}
	fprintf(stderr, "kc-vmtest: page-out left %zu of %zu pages resident (cgroup: %ld bytes, %ld in swap)\n",
		left, sizeof(resident), memcg_value("memory.current"), memcg_value("memory.swap.current"));
}

/* The OOM killer: a child that asks to be the victim and allocates until it is killed. It
 * first pages a chunk out to swap and reads it back (the swap-ins the swap collector must
 * count, whatever reclaim does below); past its memory the loop's pages go to swap too, and
 * touching the first ones again brings them back. */
static void oom(void)
{
	int memcg = small_memcg();
	pid_t pid = fork();

	if (pid == 0) {
		char *first = NULL;
		char self[16];
		char *out;

		snprintf(self, sizeof(self), "%d", getpid());
		if (memcg && write_memcg("cgroup.procs", self))
			_exit(3);
		if (write_file("/proc/self/oom_score_adj", "1000"))
			_exit(1);
		out = touched_chunk();
		page_out(out);
		read_chunk(out);
		munmap(out, CHUNK);
		for (int chunk = 0;; chunk++) {
			char *p = touched_chunk();

			if (!first)
				first = p;
			else if (chunk % 2 == 0)
				read_chunk(first);
		}
	}
	if (pid > 0)
		waitpid(pid, NULL, 0);
	if (memcg)
		rmdir(oom_memcg);
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* What each counter must count of this, in its own process row, is in counters.toml: it
 * writes nothing to the console unless something fell short. */
static int workload(void)
{
	int udp[2], tcp[3];

	block_io();
	file_io();
	processes();
	mounts();
	shm();
	signals();
	page_faults();
	dns_tcp(tcp);
	sockets(udp);
	dns();
	/* A socket closes only once every socket after it is open: one closed first would lend
	 * a later one its memory, and a flow table without a stream (the probe family's) keeps a
	 * closed row only until a new flow at its socket's address replaces it (an eviction). So
	 * DNS over TCP's sockets, opened before the TCP round trips, and the UDP round trip's,
	 * before dns's, close last. */
	close(udp[0]);
	close(udp[1]);
	for (int i = 0; i < 3; i++)
		close(tcp[i]);
	storage();
	oom();
	return 0;
}

static int cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs argv with stdout to `out` (or inherited when NULL) and waits; its exit status. */
static int run_to(char **argv, const char *out)
{
	int status = 0;
	pid_t pid = fork();

	if (pid == 0) {
		if (out) {
			int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);

			if (fd < 0 || dup2(fd, 1) < 0)
				_exit(126);
		}
		execv(argv[0], argv);
		_exit(127);
	}
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Runs argv with its output between `KC-VMTEST-BEGIN label` and `KC-VMTEST-END label status=N`
 * markers (vmtest reads the reports between them), and says how long it took. */
static void run_between(const char *label, char **argv)
{
	double t = now_ms();
	int status;

	printf("\nKC-VMTEST-BEGIN %s\n", label);
	fflush(stdout);
	status = run_to(argv, NULL);
	printf("\nKC-VMTEST-END %s status=%d\n", label, status);
	fprintf(stderr, "kc-vmtest: %s took %.0f ms\n", argv[0], now_ms() - t);
	fflush(stdout);
}

/* Runs kc-loader once on every object, one pass per attach mode (each family forced, then
 * auto), with this init as each pass's workload; its reports (one JSON document per pass) go
 * between markers. The objects load once: the verifier sees each program once per boot. */
static void run_loader(char **objects, int nobjects)
{
	char *args[MAX_OBJECTS + 12];
	int n = 0;

	args[n++] = "/kc-loader";
	args[n++] = "--json";
	args[n++] = "--attach";
	args[n++] = "trampoline,probe,tracepoint,auto";
	for (int i = 0; i < nobjects; i++)
		args[n++] = objects[i];
	/* The workload: this init again, as its own process, after everything attached. */
	args[n++] = "--";
	args[n++] = "/init";
	args[n++] = "workload";
	args[n] = NULL;
	run_between("passes", args);
}

/* Runs the Rust consumer (kc-agent: aya and the release's attach plan) on the release's CO-RE
 * objects (those of the collectors this run is narrowed to), one pass per attach mode with
 * this init as each pass's workload, where vmtest put it in the initramfs; its reports go
 * between markers of their own and are judged as the loader's are. */
static void run_agent(char **narrowed, int nnarrowed)
{
	static char objects[MAX_OBJECTS][80];
	char *args[2 * MAX_OBJECTS + 12];
	int n = 0;

	if (access("/kc-agent", X_OK) != 0)
		return;
	args[n++] = "/kc-agent";
	args[n++] = "--release";
	args[n++] = KC_CURRENT "/co-re";
	args[n++] = "--attach";
	args[n++] = "trampoline,probe,tracepoint,auto";
	for (int i = 0; i < nnarrowed && i < MAX_OBJECTS; i++) {
		snprintf(objects[i], sizeof(objects[i]), "%s.bpf.o", narrowed[i]);
		args[n++] = "--object";
		args[n++] = objects[i];
	}
	args[n++] = "--";
	args[n++] = "/init";
	args[n++] = "workload";
	args[n] = NULL;
	run_between("agent", args);
}

static void print_file(const char *path)
{
	char buf[4096];
	ssize_t n;
	int fd = open(path, O_RDONLY);

	while (fd >= 0 && (n = read(fd, buf, sizeof(buf))) > 0)
		fwrite(buf, 1, n, stdout);
	if (fd >= 0)
		close(fd);
}

/* Return probes as a killed kc-loader (and kc-agent, where this guest runs one) would have
 * left them: pid 999999 is no process here. Each consumer removes its own kind's at start;
 * print_probe_events shows any that stayed, and vmtest fails the kernel for it. */
static void plant_stale_probes(void)
{
	static const char *lines[] = { "r:kc_loader/kc_999999_0 vfs_read\n", "r:kc_agent/kc_999999_0 vfs_read\n" };
	int n = access("/kc-agent", X_OK) == 0 ? 2 : 1;

	for (int i = 0; i < n; i++) {
		int fd = open("/sys/kernel/tracing/kprobe_events", O_WRONLY | O_APPEND);

		if (fd < 0 || write(fd, lines[i], strlen(lines[i])) < 0)
			fprintf(stderr, "kc-vmtest: planting %.40s in kprobe_events: %s\n", lines[i], strerror(errno));
		if (fd >= 0)
			close(fd);
	}
}

/* kprobe_events once kc-loader and kc-agent exited (their return probes are made there, in
 * groups kc_loader and kc_agent): anything in it was left behind, and vmtest fails the kernel
 * for it. */
static void print_probe_events(void)
{
	const char *path = access("/sys/kernel/tracing/kprobe_events", F_OK) == 0 ?
				   "/sys/kernel/tracing/kprobe_events" : "/sys/kernel/debug/tracing/kprobe_events";

	printf("\nKC-VMTEST-BEGIN probe-events\n");
	print_file(path);
	printf("\nKC-VMTEST-END probe-events\n");
	fflush(stdout);
}

/* The collectors this run is narrowed to: /collectors, one name per line, when vmtest was
 * given --collector; none: every collector of the release. */
#define MAX_COLLECTORS 32
static char *collectors[MAX_COLLECTORS];
static int ncollectors;

static void read_collectors(void)
{
	char line[64];
	FILE *f = fopen("/collectors", "r");

	while (f && ncollectors < MAX_COLLECTORS && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		if (line[0])
			collectors[ncollectors++] = strdup(line);
	}
	if (f)
		fclose(f);
}

/* Runs the release's kc-select with `extra` arguments (and the guest's static loader to ask
 * the kernel), prints its JSON report between markers for the host to judge, and adds each
 * object it chose to `objects` (once). Returns the new count. */
static int select_objects(const char *label, char **extra, char **objects, int n)
{
	static char report[1 << 16];
	char *args[16 + 2 * MAX_COLLECTORS] = { KC_CURRENT "/kc-select", "--json", "--loader", "/kc-loader" };
	int a = 4, status, fd;
	ssize_t len = 0, got;
	char *p, *end;

	for (; *extra && a < 15; extra++)
		args[a++] = *extra;
	/* A narrowed run (`vmtest --collector`): kc-select chooses, and trial-loads, these alone. */
	for (int c = 0; c < ncollectors; c++) {
		args[a++] = "--collector";
		args[a++] = collectors[c];
	}
	args[a] = NULL;
	double t = now_ms();

	status = run_to(args, "/tmp/kc-select.json");
	fprintf(stderr, "kc-vmtest: kc-select (%s) took %.0f ms\n", label, now_ms() - t);
	printf("\nKC-VMTEST-SELECT-BEGIN %s\n", label);
	print_file("/tmp/kc-select.json");
	printf("\nKC-VMTEST-SELECT-END %s status=%d\n", label, status);
	fflush(stdout);
	fd = open("/tmp/kc-select.json", O_RDONLY);
	while (fd >= 0 && len < (ssize_t)sizeof(report) - 1 && (got = read(fd, report + len, sizeof(report) - 1 - len)) > 0)
		len += got;
	if (fd >= 0)
		close(fd);
	report[len] = '\0';
	/* Each choice is `"object": "<path under the release>"` (null when nothing fits). */
	for (p = report; n < MAX_OBJECTS && (p = strstr(p, "\"object\": \"")); p = end + 1) {
		int seen = 0;
		char *path;

		p += strlen("\"object\": \"");
		end = strchr(p, '"');
		if (!end)
			break;
		*end = '\0';
		if (asprintf(&path, KC_CURRENT "/%s", p) < 0)
			break;
		for (int i = 0; i < n; i++)
			seen |= strcmp(objects[i], path) == 0;
		if (seen)
			free(path);
		else
			objects[n++] = path;
	}
	return n;
}

/* Round `round`'s order of the bench's `n` modes, as indices: splitmix64 seeded by the round,
 * then Fisher-Yates; the host side (round_order in xtask/src/bench/overhead/mod.rs) draws
 * the same, so that no mode always follows the same other and pays for its after-effects. */
static void round_order(int round, size_t *order, size_t n)
{
	unsigned long long state = (unsigned long long)round + 1;

	for (size_t i = 0; i < n; i++)
		order[i] = i;
	for (size_t i = n - 1; i > 0; i--) {
		unsigned long long z = (state += 0x9e3779b97f4a7c15ULL);
		size_t j, t;

		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
		z ^= z >> 31;
		j = (size_t)(z % (i + 1));
		t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
}

/* `cargo xtask bench overhead` in a guest: /bench-plan holds "ROUNDS" then lines
 * "COLLECTOR OP N"; each round runs each line's workload alone (mode none), under the
 * collector in each attach mode, and under its floor (/objects/COLLECTOR.floor.bpf.o: its
 * programs, empty) in each family, in the round's order, printing "KC-BENCH round line
 * collector mode ns" (line: the plan's, from 0: a collector may have several cases); the first
 * round also prints each loader report, for the family each event got.
 * The modes are in the order of Run::all in xtask/src/bench/overhead/mod.rs. */
static void bench(void)
{
	static const char *modes[] = { "none", "trampoline", "probe", "tracepoint", "auto",
				       "floor-trampoline", "floor-probe", "floor-tracepoint" };
	static const char floor[] = "floor-";
	size_t order[sizeof(modes) / sizeof(modes[0])];
	char collector[64][32], op[64][32], n[64][16], object[96];
	int rounds = 0, lines = 0;
	FILE *plan = fopen("/bench-plan", "r");

	if (!plan || fscanf(plan, "%d", &rounds) != 1)
		return;
	/* The pagecache case reads a block device's page cache: /tmp is shmem here. */
	setenv("KC_BENCH_FILE", drive(BLOCK_DRIVE), 1);
	mount_filesystems();
	setenv("KC_BENCH_FS_DIR", "/fs/ext4", 1);
	while (lines < 64 && fscanf(plan, "%31s %31s %15s", collector[lines], op[lines], n[lines]) == 3)
		lines++;
	fclose(plan);
	for (int r = 0; r < rounds; r++) {
		round_order(r, order, sizeof(modes) / sizeof(modes[0]));
		for (int l = 0; l < lines; l++) {
			for (size_t k = 0; k < sizeof(modes) / sizeof(modes[0]); k++) {
				size_t m = order[k];
				char *workload[] = { "/kc-bench-workload", op[l], n[l], "/tmp/kc-bench-ns", NULL };
				int is_floor = strncmp(modes[m], floor, strlen(floor)) == 0;
				char *loader[] = { "/kc-loader", "--json", "--attach",
						   (char *)modes[m] + (is_floor ? strlen(floor) : 0), object, "--",
						   workload[0], op[l], n[l], workload[3], NULL };
				int status;
				FILE *f;
				double ns = -1;

				snprintf(object, sizeof(object), "/objects/%.31s.%sbpf.o", collector[l], is_floor ? "floor." : "");
				unlink("/tmp/kc-bench-ns");
				status = m == 0 ? run_to(workload, NULL) : run_to(loader, "/tmp/kc-bench-report");
				f = fopen("/tmp/kc-bench-ns", "r");
				if (f && fscanf(f, "%lf", &ns) != 1)
					ns = -1;
				if (f)
					fclose(f);
				printf("KC-BENCH %d %d %s %s %.1f %d\n", r, l, collector[l], modes[m], ns, status);
				if (r == 0 && m > 0) {
					printf("KC-BENCH-REPORT %d %s %s\n", l, collector[l], modes[m]);
					print_file("/tmp/kc-bench-report");
					printf("\nKC-BENCH-REPORT-END\n");
				}
				fflush(stdout);
			}
		}
	}
}

/* The workload of a memory run (`/init memcg DIR OUT`): runs inside cgroup DIR while
 * kc-loader holds the objects, and copies what the cgroup is charged (memory.current, then
 * memory.stat's lines) to file OUT (a cgroup directory takes no files of ours), for memory()
 * to print. */
static int memcg_snapshot(const char *dir, const char *out)
{
	static const char *files[] = { "memory.current", "memory.stat" };
	char path[160], buf[4096];
	int to, from;
	ssize_t n;

	to = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (to < 0)
		return 1;
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		from = open(path, O_RDONLY);
		if (i == 0 && write(to, "current ", 8) != 8)
			break;
		while (from >= 0 && (n = read(from, buf, sizeof(buf))) > 0)
			if (write(to, buf, n) != n)
				break;
		if (from >= 0)
			close(from);
	}
	close(to);
	return 0;
}

/* Runs argv (stdout to `out`) as a member of cgroup `cgroup` from before its exec, so that
 * everything it makes the kernel allocate is charged there; its exit status. */
static int run_in_cgroup(char **argv, const char *out, const char *cgroup)
{
	char procs[160];
	int status = 0;
	pid_t pid = fork();

	if (pid == 0) {
		int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		snprintf(procs, sizeof(procs), "%s/cgroup.procs", cgroup);
		if (fd < 0 || dup2(fd, 1) < 0 || write_file(procs, "0"))
			_exit(126);
		execv(argv[0], argv);
		_exit(127);
	}
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* `cargo xtask bench memory` in a guest: /memory-plan holds table sizes, one per line; for
 * each, kc-loader loads every object under /objects with that --table-size (maps created,
 * programs verified, nothing attached: attaching adds no map memory, and detaching
 * trampolines from several emulated CPUs has crashed TCG guests in text patching) around a
 * process that does nothing but read what the load is charged, and its report (each object's
 * memory_bytes: the kernel's memlock of its maps) is printed between "KC-MEMORY-BEGIN size"
 * and "KC-MEMORY-END". The loader runs in a memory cgroup of its own (kc-memory-SIZE), whose
 * charge while the objects are held is printed between "KC-MEMCG-BEGIN size" and
 * "KC-MEMCG-END": the memory cgroup's account of the same load (5.11 and later charge BPF
 * memory there), where the guest has the memory controller. */
static void memory(void)
{
	static char paths[MAX_OBJECTS][96];
	char *args[MAX_OBJECTS + 12], size[16], cgroup[64], charge[80];
	int n = 0, nobjects = 0;
	FILE *plan = fopen("/memory-plan", "r");
	DIR *dir = opendir("/objects");
	struct dirent *e;
	int memcg = write_file("/sys/fs/cgroup/cgroup.subtree_control", "+memory") == 0;

	if (!memcg)
		say("no memory controller: the loads' memory cgroup charge is not measured");
	while (dir && (e = readdir(dir)) && nobjects < MAX_OBJECTS)
		if (strstr(e->d_name, ".bpf.o"))
			snprintf(paths[nobjects++], sizeof(paths[0]), "/objects/%.80s", e->d_name);
	if (dir)
		closedir(dir);
	while (plan && fscanf(plan, "%15s", size) == 1) {
		snprintf(cgroup, sizeof(cgroup), "/sys/fs/cgroup/kc-memory-%s", size);
		snprintf(charge, sizeof(charge), "/tmp/kc-memory-%s.charge", size);
		mkdir(cgroup, 0755);
		n = 0;
		args[n++] = "/kc-loader";
		args[n++] = "--json";
		args[n++] = "--no-attach";
		args[n++] = "--table-size";
		args[n++] = size;
		for (int i = 0; i < nobjects; i++)
			args[n++] = paths[i];
		args[n++] = "--";
		args[n++] = "/init";
		args[n++] = "memcg";
		args[n++] = cgroup;
		args[n++] = charge;
		args[n] = NULL;
		if (memcg)
			run_in_cgroup(args, "/tmp/kc-memory.json", cgroup);
		else
			run_to(args, "/tmp/kc-memory.json");
		printf("\nKC-MEMORY-BEGIN %s\n", size);
		print_file("/tmp/kc-memory.json");
		printf("\nKC-MEMORY-END\n");
		if (memcg && access(charge, F_OK) == 0) {
			printf("\nKC-MEMCG-BEGIN %s\n", size);
			print_file(charge);
			printf("\nKC-MEMCG-END\n");
		}
		fflush(stdout);
	}
	if (plan)
		fclose(plan);
}

/* Swap, the modules, the MD array and the file systems, once per boot. */
static void prepare_storage(void)
{
	double t = now_ms();

	swap_on();
	load_modules();
	md_assemble();
	mount_filesystems();
	fprintf(stderr, "kc-vmtest: storage and modules took %.0f ms\n", now_ms() - t);
}

/* Starts the release's kc-exporter (where vmtest asked for it: /exporter), scrapes its
 * /metrics once over loopback (the answer waits until every object is attached), prints the
 * scrape between `KC-EXPORTER-BEGIN` and `KC-EXPORTER-END status=N` (its exit status after
 * SIGTERM) for vmtest to judge, and stops it. */
static void run_exporter(char **narrowed, int nnarrowed)
{
	static char response[4 << 20];
	static const char request[] = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(9435), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct timeval wait = { .tv_sec = 300 };
	char *args[8 + 2 * MAX_COLLECTORS];
	double t = now_ms();
	size_t len = 0;
	int n = 0, status = -1, fd = -1;
	ssize_t got;
	char *body;
	pid_t pid;

	if (access("/exporter", F_OK) != 0)
		return;
	args[n++] = KC_CURRENT "/kc-exporter";
	args[n++] = "--listen";
	args[n++] = "127.0.0.1:9435";
	/* The release's own loader is the libc's; this initramfs has none for it. */
	args[n++] = "--loader";
	args[n++] = "/kc-loader";
	for (int i = 0; i < nnarrowed; i++) {
		args[n++] = "--collector";
		args[n++] = narrowed[i];
	}
	args[n] = NULL;
	pid = fork();
	if (pid == 0) {
		execv(args[0], args);
		_exit(127);
	}
	/* It binds before loading: retry until the port answers, or it ended. */
	for (int tries = 0; pid > 0 && tries < 600; tries++) {
		if (waitpid(pid, &status, WNOHANG) == pid) {
			pid = -1;
			break;
		}
		fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0)
			break;
		if (fd >= 0)
			close(fd);
		fd = -1;
		usleep(200 * 1000);
	}
	if (fd >= 0) {
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof(wait));
		if (write(fd, request, sizeof(request) - 1) == (ssize_t)sizeof(request) - 1)
			while (len < sizeof(response) - 1 && (got = read(fd, response + len, sizeof(response) - 1 - len)) > 0)
				len += got;
		close(fd);
	}
	response[len] = 0;
	body = strstr(response, "\r\n\r\n");
	printf("\nKC-EXPORTER-BEGIN\n%s\n", body ? body + 4 : response);
	if (pid > 0) {
		kill(pid, SIGTERM);
		waitpid(pid, &status, 0);
	}
	printf("\nKC-EXPORTER-END status=%d\n",
	       WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	fprintf(stderr, "kc-vmtest: kc-exporter took %.0f ms\n", now_ms() - t);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	static char *with_btf[] = { NULL };
	static char *entry[] = { "--btf", "/nonexistent", "--legacy-mode", "entry", NULL };
	static char *ret[] = { "--btf", "/nonexistent", "--legacy-mode", "return", NULL };
	char *objects[MAX_OBJECTS];
	int n = 0;

	if (argc > 1 && strcmp(argv[1], "workload") == 0) {
		import_drives();
		return workload();
	}
	if (argc > 3 && strcmp(argv[1], "memcg") == 0)
		return memcg_snapshot(argv[2], argv[3]);
	if (argc > 1)
		return 0; /* "noop": a process to fork and exec */

	mount_all();
	loopback_up();
	wait_for_drives();
	if (access("/memory-plan", F_OK) == 0) {
		memory();
		printf("\nKC-VMTEST-DONE\n");
		fflush(stdout);
		reboot(RB_POWER_OFF);
	}
	if (access("/bench-plan", F_OK) == 0) {
		bench();
		printf("\nKC-VMTEST-DONE\n");
		fflush(stdout);
		reboot(RB_POWER_OFF);
	}
	fprintf(stderr, "kc-vmtest: init started %.0f ms after boot\n", now_ms());
	prepare_storage();
	read_collectors();
	/* The objects a host with this kernel would load (CO-RE), and those it would fall back to
	 * without BTF (the bucket's legacy objects, both modes): each one runs in every mode. */
	n = select_objects("btf", with_btf, objects, n);
	n = select_objects("no-btf-entry", entry, objects, n);
	n = select_objects("no-btf-return", ret, objects, n);
	qsort(objects, n, sizeof(char *), cmp);
	plant_stale_probes();
	run_loader(objects, n);
	run_agent(collectors, ncollectors);
	run_exporter(collectors, ncollectors);
	print_probe_events();
	printf("\nKC-VMTEST-DONE\n");
	fflush(stdout);
	sync();
	reboot(RB_POWER_OFF);
	return 0;
}
