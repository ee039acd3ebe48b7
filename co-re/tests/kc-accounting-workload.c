// SPDX-License-Identifier: GPL-2.0
/*
 * The host's workload for judging counters against the kernel's own accounting (`cargo xtask
 * test kernel-accounting`): not vmtest's, so that the judge is proven on a second workload.
 * Single-threaded (the kernel's figures are those of its main thread), in its own directory:
 *
 *   kc-accounting-workload DIR
 *
 * writes and reads back a file in DIR in pieces, forks children that exit at once, sends
 * datagrams to itself and connects to itself over TCP on 127.0.0.1, asks its own resolver on
 * 127.0.0.1:53 two DNS questions (root: the port is privileged; the second never answered, its
 * socket left for the exit to close) and a child one more, left at its exit, then sends that
 * question's bytes, not to DNS, from a later child given the first's pid (dns_pid_reused), and
 * touches fresh anonymous
 * pages. It prints nothing unless something fails (exit 1).
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define PIECES 64
#define PIECE 1000
#define CHILDREN 5
#define DATAGRAMS 20
#define PAGES 300
/* The descriptor dns_pid_reused_here's two children both use. */
#define REUSED_FD 100
/* Forks dns_pid_reused_here may take until one is given the pid it asks for. */
#define PID_TRIES 20

static void fail(const char *what)
{
	perror(what);
	exit(1);
}

static void file_io(const char *dir)
{
	char path[4096], buf[PIECE];
	int fd;

	snprintf(path, sizeof(path), "%s/kc-accounting-file", dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		fail("open");
	memset(buf, 'k', sizeof(buf));
	for (int i = 0; i < PIECES; i++)
		if (write(fd, buf, sizeof(buf)) != sizeof(buf))
			fail("write");
	for (int i = 0; i < PIECES; i++)
		if (pread(fd, buf, sizeof(buf), (off_t)i * PIECE) != sizeof(buf))
			fail("pread");
	/* Reads past the end: calls that move no bytes. */
	for (int i = 0; i < 3; i++)
		if (read(fd, buf, sizeof(buf)) != 0)
			fail("read at the end");
	close(fd);
	unlink(path);
}

static void children(void)
{
	for (int i = 0; i < CHILDREN; i++) {
		pid_t pid = fork();

		if (pid < 0)
			fail("fork");
		if (pid == 0)
			_exit(0);
		waitpid(pid, NULL, 0);
	}
}

static struct sockaddr_in loopback(int fd)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);

	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) || getsockname(fd, (struct sockaddr *)&a, &len))
		fail("bind");
	return a;
}

static void datagrams(void)
{
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in self = loopback(fd);
	char buf[64] = "kc";

	for (int i = 0; i < DATAGRAMS; i++) {
		if (sendto(fd, buf, sizeof(buf), 0, (struct sockaddr *)&self, sizeof(self)) != sizeof(buf))
			fail("sendto");
		if (recv(fd, buf, sizeof(buf), 0) != sizeof(buf))
			fail("recv");
	}
	close(fd);
}

/* A child asks the resolver on 127.0.0.1:53 `question` (as id 0x6b65) from descriptor
 * REUSED_FD and exits with it waiting: a timeout of that server's, at its exit. Then a later
 * child, given the first's pid (ns_last_pid: root), sends the same bytes on a socket pair at the
 * same descriptor and closes it: the first's socket entry, left by its exit, must not be taken
 * for the second's (no query, no second timeout at its close). */
static void dns_pid_reused_here(int resolver, const unsigned char *question, size_t size)
{
	struct sockaddr_in server = { .sin_family = AF_INET, .sin_port = htons(53),
				      .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	unsigned char m[512];
	pid_t first, again = -1;
	int status;

	memcpy(m, question, size);
	m[1] = 0x65;
	first = fork();
	if (first < 0)
		fail("fork");
	if (first == 0) {
		int fd = socket(AF_INET, SOCK_DGRAM, 0);

		if (dup2(fd, REUSED_FD) < 0 || connect(REUSED_FD, (struct sockaddr *)&server, sizeof(server)) ||
		    send(REUSED_FD, m, size, 0) != (ssize_t)size)
			_exit(1);
		_exit(0);
	}
	if (recv(resolver, m, sizeof(m), 0) != (ssize_t)size || waitpid(first, &status, 0) != first || status)
		fail("a child's dns question left at its exit");
	for (int i = 0; i < PID_TRIES && again != first; i++) {
		FILE *last = fopen("/proc/sys/kernel/ns_last_pid", "w");

		if (!last || fprintf(last, "%d", first - 1) < 0 || fclose(last))
			fail("/proc/sys/kernel/ns_last_pid (run as root)");
		again = fork();
		if (again < 0)
			fail("fork");
		if (again == 0) {
			int pair[2];

			if (getpid() != first)
				_exit(0);
			if (socketpair(AF_UNIX, SOCK_DGRAM, 0, pair) || dup2(pair[0], REUSED_FD) < 0 ||
			    send(REUSED_FD, m, size, 0) != (ssize_t)size || close(REUSED_FD))
				_exit(1);
			_exit(0);
		}
		if (waitpid(again, &status, 0) != again || status)
			fail("a later child on the first's descriptor");
	}
	if (again != first)
		fail("no later child was given the first child's pid: other processes took it each time (run again when the host forks less)");
}

/* dns_pid_reused_here in a child of its own: the forks it retries until one is given the pid,
 * and its writes of ns_last_pid (whose digits vary), stay out of the workload's own row, which
 * two consumers' runs must count alike. */
static void dns_pid_reused(int resolver, const unsigned char *question, size_t size)
{
	int status;
	pid_t reuser = fork();

	if (reuser < 0)
		fail("fork");
	if (reuser == 0) {
		dns_pid_reused_here(resolver, question, size);
		_exit(0);
	}
	if (waitpid(reuser, &status, 0) != reuser)
		fail("waiting for the pid-reuse child");
	if (status) {
		/* No call failed here: errno would be stale. */
		if (WIFSIGNALED(status))
			fprintf(stderr, "the pid-reuse child was killed by signal %d: run the workload again\n",
				WTERMSIG(status));
		else
			fprintf(stderr, "the pid-reuse child exited %d: its error is above\n", WEXITSTATUS(status));
		exit(1);
	}
}

/* Two DNS questions to a resolver of its own on 127.0.0.1:53, from a connected socket: one
 * answered NOERROR, then one the resolver drops, the socket left open for the process's exit to
 * close; and dns_pid_reused's: one row for 127.0.0.1 in the dns collector's server table, of
 * three queries, one response and two timeouts (the exits': each process asks that server
 * alone). */
static void dns(void)
{
	static const unsigned char question[] = { 0x6b, 0x63, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0,
						  2, 'k', 'c', 4, 't', 'e', 's', 't', 0, 0, 1, 0, 1 };
	struct sockaddr_in server = { .sin_family = AF_INET, .sin_port = htons(53),
				      .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sockaddr_in from;
	socklen_t len = sizeof(from);
	int resolver = socket(AF_INET, SOCK_DGRAM, 0), client = socket(AF_INET, SOCK_DGRAM, 0);
	unsigned char m[512];

	if (bind(resolver, (struct sockaddr *)&server, sizeof(server)))
		fail("bind 127.0.0.1:53 (is a resolver listening there? run as root)");
	if (connect(client, (struct sockaddr *)&server, sizeof(server)) ||
	    send(client, question, sizeof(question), 0) != sizeof(question))
		fail("dns question");
	if (recvfrom(resolver, m, sizeof(m), 0, (struct sockaddr *)&from, &len) != sizeof(question))
		fail("dns question received");
	m[2] |= 0x80; /* QR: a response */
	m[3] = 0x80;  /* RA, NOERROR */
	if (sendto(resolver, m, sizeof(question), 0, (struct sockaddr *)&from, len) != sizeof(question) ||
	    recv(client, m, sizeof(m), 0) != sizeof(question))
		fail("dns answer");
	memcpy(m, question, sizeof(question));
	m[1] = 0x64; /* another id */
	if (send(client, m, sizeof(question), 0) != sizeof(question) ||
	    recv(resolver, m, sizeof(m), 0) != sizeof(question))
		fail("dns question left unanswered");
	dns_pid_reused(resolver, question, sizeof(question));
	close(resolver);
}

static void connection(void)
{
	int server = socket(AF_INET, SOCK_STREAM, 0), client = socket(AF_INET, SOCK_STREAM, 0), peer;
	struct sockaddr_in self = loopback(server);

	if (listen(server, 1) || connect(client, (struct sockaddr *)&self, sizeof(self)))
		fail("connect");
	peer = accept(server, NULL, NULL);
	if (peer < 0)
		fail("accept");
	close(peer);
	close(client);
	close(server);
}

static void faults(void)
{
	long page = sysconf(_SC_PAGESIZE);
	char *p = mmap(NULL, PAGES * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		fail("mmap");
	for (long i = 0; i < PAGES; i++)
		p[i * page] = 1;
	munmap(p, PAGES * page);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: kc-accounting-workload DIR\n");
		return 2;
	}
	file_io(argv[1]);
	children();
	datagrams();
	dns();
	connection();
	faults();
	return 0;
}
