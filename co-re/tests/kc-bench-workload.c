// SPDX-License-Identifier: GPL-2.0
/*
 * kc-bench-workload: runs one system operation N times and writes the nanoseconds per
 * operation to OUT (`cargo xtask bench overhead` runs it with and without collectors).
 *
 *   kc-bench-workload OP N OUT
 *
 * OP: read (1 byte from /dev/zero), open (open and close /dev/null), fork (vfork, exit, wait),
 * fsync (of a 1-byte file in /dev/shm, else /tmp), udp (a 1-byte datagram to a loopback
 * socket, and its receipt), umount (of a path that is not a mount point: the error path),
 * pagecache (a 1-byte pread of a cached page of $KC_BENCH_FILE, else of a file in /var/tmp),
 * shmctl (IPC_STAT of a System V shared memory segment), stat (of /dev: one dcache lookup),
 * signal (a SIGUSR1 raised and handled), fault (an anonymous page mapped, touched: one page
 * fault, and unmapped), fsread (a 1-byte pread of a file on a disk file system), wake (a byte
 * to a child and back through pipes: two wakeups and two switches), tcp (a byte each way on an
 * established loopback connection), tcpconn (a loopback connection opened, accepted and
 * closed, with a reset: no TIME_WAIT left to run out of ports).
 * It runs on the last CPU only, and so does the wake case's child (on two CPUs a wakeup is
 * sometimes a switch and sometimes an interrupt to the other CPU: two costs, by chance): a
 * migration in the middle of a run costs more than some of the differences measured. The N
 * operations run in BATCHES batches and the figure is the median batch's time per operation,
 * so that a batch an interrupt or another task cut into does not move it.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BATCHES 15

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* A child that exits at once; kept out of main so vfork cannot clobber main's variables. */
static __attribute__((noinline)) pid_t spawn(void)
{
	pid_t pid = vfork();

	if (pid == 0)
		_exit(0);
	return pid;
}

static void on_usr1(int sig)
{
	(void)sig;
}

static int by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static int fail(const char *what)
{
	perror(what);
	return 1;
}

/* A connection to the listener `listener` at `addr`: its two ends. 0, or -1. */
static int tcp_open(const struct sockaddr_in *addr, int listener, int *cli, int *acc)
{
	*cli = socket(AF_INET, SOCK_STREAM, 0);
	if (*cli < 0 || connect(*cli, (const struct sockaddr *)addr, sizeof(*addr)))
		return -1;
	*acc = accept(listener, NULL, NULL);
	if (*acc < 0)
		return -1;
	/* Each byte goes at once, not held for the previous one's ACK (Nagle). */
	setsockopt(*cli, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
	setsockopt(*acc, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
	return 0;
}

/* Closes `fd` with a reset (linger 0): the socket goes to CLOSE at once, no TIME_WAIT. */
static void tcp_reset(int fd)
{
	struct linger now = { .l_onoff = 1, .l_linger = 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &now, sizeof(now));
	close(fd);
}

int main(int argc, char **argv)
{
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(addr);
	char c = 'k', path[] = "/dev/shm/kc-bench-XXXXXX";
	int fd = -1, peer = -1, child = -1;
	long n;
	double t, batch_ns[BATCHES];
	cpu_set_t cpus;
	FILE *out;

	if (argc != 4 || (n = atol(argv[2])) < BATCHES) {
		fprintf(stderr, "usage: kc-bench-workload read|open|fork|fsync|udp|umount|pagecache|shmctl|stat|signal|fault|fsread|wake|tcp|tcpconn N OUT (N: at least %d)\n", BATCHES);
		return 2;
	}
	CPU_ZERO(&cpus);
	CPU_SET(sysconf(_SC_NPROCESSORS_ONLN) - 1, &cpus);
	sched_setaffinity(0, sizeof(cpus), &cpus);
	if (strcmp(argv[1], "read") == 0 && (fd = open("/dev/zero", O_RDONLY)) < 0)
		return fail("/dev/zero");
	if (strcmp(argv[1], "fsync") == 0) {
		if (access("/dev/shm", W_OK) != 0)
			memcpy(path, "/tmp/kc-bench-XXXXXX", sizeof("/tmp/kc-bench-XXXXXX"));
		if ((fd = mkstemp(path)) < 0 || write(fd, &c, 1) != 1)
			return fail(path);
		unlink(path);
	}
	if (strcmp(argv[1], "pagecache") == 0) {
		/* A page-cache file: a disk file system's, or a block device's (not shmem's). */
		const char *file = getenv("KC_BENCH_FILE");

		if (file) {
			if ((fd = open(file, O_RDONLY)) < 0)
				return fail(file);
		} else {
			memcpy(path, "/var/tmp/kc-bench-XXXXXX", sizeof(path));
			if ((fd = mkstemp(path)) < 0 || write(fd, &c, 1) != 1)
				return fail(path);
			unlink(path);
		}
	}
	if (strcmp(argv[1], "udp") == 0) {
		peer = socket(AF_INET, SOCK_DGRAM, 0);
		fd = socket(AF_INET, SOCK_DGRAM, 0);
		if (bind(peer, (struct sockaddr *)&addr, sizeof(addr)) || getsockname(peer, (struct sockaddr *)&addr, &len))
			return fail("udp socket");
	}
	if (strcmp(argv[1], "tcp") == 0 || strcmp(argv[1], "tcpconn") == 0) {
		/* A listener (`peer`), and for tcp one connection to it (`fd`, its accepted end `child`). */
		peer = socket(AF_INET, SOCK_STREAM, 0);
		if (bind(peer, (struct sockaddr *)&addr, sizeof(addr)) || listen(peer, 16) ||
		    getsockname(peer, (struct sockaddr *)&addr, &len))
			return fail("tcp listener");
		if (strcmp(argv[1], "tcp") == 0 && tcp_open(&addr, peer, &fd, &child))
			return fail("tcp connection");
	}
	if (strcmp(argv[1], "fsread") == 0) {
		/* A file on a disk file system: KC_BENCH_FS_DIR (the guests' ext4), else /var/tmp. */
		const char *dir = getenv("KC_BENCH_FS_DIR");

		snprintf(path, sizeof(path), "%s/kc-bench-XXXXXX", dir ? dir : "/var/tmp");
		if ((fd = mkstemp(path)) < 0 || write(fd, &c, 1) != 1)
			return fail(path);
		unlink(path);
	}
	if (strcmp(argv[1], "wake") == 0) {
		/* A child that echoes each byte back: every iteration wakes it, and then us. */
		int to[2], from[2];

		if (pipe(to) || pipe(from))
			return fail("pipe");
		if (fork() == 0) {
			/* Only its own ends open: our exit is its end of file, and it exits too
			 * (holding our stdout, it would keep kc-loader's reader waiting). */
			close(to[1]);
			close(from[0]);
			while (read(to[0], &c, 1) == 1 && write(from[1], &c, 1) == 1)
				;
			_exit(0);
		}
		close(to[0]);
		close(from[1]);
		fd = to[1];
		peer = from[0];
	}
	if (strcmp(argv[1], "shmctl") == 0 && (fd = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600)) < 0)
		return fail("shmget");
	if (strcmp(argv[1], "signal") == 0)
		signal(SIGUSR1, on_usr1);
	for (int b = 0; b < BATCHES; b++) {
		long todo = n / BATCHES + (b < n % BATCHES);
		double t0 = now_ns();

		for (long i = 0; i < todo; i++) {
			if (strcmp(argv[1], "read") == 0) {
				if (read(fd, &c, 1) != 1)
					return fail("read");
			} else if (strcmp(argv[1], "open") == 0) {
				int f = open("/dev/null", O_RDONLY);

				if (f < 0)
					return fail("open");
				close(f);
			} else if (strcmp(argv[1], "fork") == 0) {
				pid_t pid = spawn();

				if (pid < 0 || waitpid(pid, NULL, 0) < 0)
					return fail("fork");
			} else if (strcmp(argv[1], "fsync") == 0) {
				if (fsync(fd))
					return fail("fsync");
			} else if (strcmp(argv[1], "udp") == 0) {
				if (sendto(fd, &c, 1, 0, (struct sockaddr *)&addr, sizeof(addr)) != 1 || recv(peer, &c, 1, 0) != 1)
					return fail("udp");
			} else if (strcmp(argv[1], "umount") == 0) {
				umount("/kc-bench-not-a-mount-point");
			} else if (strcmp(argv[1], "pagecache") == 0) {
				if (pread(fd, &c, 1, 0) != 1)
					return fail("pread");
			} else if (strcmp(argv[1], "shmctl") == 0) {
				struct shmid_ds ds;

				if (shmctl(fd, IPC_STAT, &ds))
					return fail("shmctl");
			} else if (strcmp(argv[1], "fault") == 0) {
				char *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

				if (page == MAP_FAILED)
					return fail("mmap");
				page[0] = 1;
				munmap(page, 4096);
			} else if (strcmp(argv[1], "signal") == 0) {
				if (raise(SIGUSR1))
					return fail("raise");
			} else if (strcmp(argv[1], "fsread") == 0) {
				if (pread(fd, &c, 1, 0) != 1)
					return fail("pread");
			} else if (strcmp(argv[1], "wake") == 0) {
				if (write(fd, &c, 1) != 1 || read(peer, &c, 1) != 1)
					return fail("wake");
			} else if (strcmp(argv[1], "tcp") == 0) {
				if (write(fd, &c, 1) != 1 || read(child, &c, 1) != 1 || write(child, &c, 1) != 1 ||
				    read(fd, &c, 1) != 1)
					return fail("tcp");
			} else if (strcmp(argv[1], "tcpconn") == 0) {
				int cli, acc;

				if (tcp_open(&addr, peer, &cli, &acc))
					return fail("tcpconn");
				tcp_reset(acc);
				tcp_reset(cli);
			} else if (strcmp(argv[1], "stat") == 0) {
				struct stat st;

				/* One component: one lock-free dcache lookup. */
				if (stat("/dev", &st))
					return fail("stat");
			} else {
				fprintf(stderr, "kc-bench-workload: unknown operation %s\n", argv[1]);
				return 2;
			}
		}
		batch_ns[b] = (now_ns() - t0) / todo;
	}
	qsort(batch_ns, BATCHES, sizeof(batch_ns[0]), by_value);
	t = batch_ns[BATCHES / 2];
	if (strcmp(argv[1], "shmctl") == 0)
		shmctl(fd, IPC_RMID, NULL);
	out = fopen(argv[3], "w");
	if (!out || fprintf(out, "%.1f\n", t) < 0 || fclose(out))
		return fail(argv[3]);
	return 0;
}
