/*
 * m365-handoff - a pipe(8) command that hands its delivery to the
 * m365-transport daemon (m365-transport -D), or runs m365-transport
 * itself when no daemon listens.
 *
 *   m365-handoff [-S SOCKET] [-T TRANSPORT] ARGUMENT...
 *
 * ARGUMENT... are m365-transport's, as in master.cf (-c FILE -q QUEUEID
 * -f SENDER -a CLIENT -s SASL -- RECIPIENT...).  What a pipe(8) delivery
 * costs is mostly the start of a process that loads OpenSSL and sets it
 * up, and a new TLS session; the daemon's workers have done the first
 * once and keep sessions open, and run exactly what m365-transport
 * would have run, with this process's standard input (the message),
 * output (the status line pipe(8) reports), error, command line and
 * environment.  This program loads only the C library, reads nothing of
 * the message, and exits with the delivery's own exit status.
 *
 * Failure rules (pipe(8) bounces on every status but 75 and 71):
 *  - no daemon (no socket, nobody listening, the request not taken):
 *    exec TRANSPORT with the same arguments, the delivery as before;
 *  - the request taken, then no exit status (the worker died): 75,
 *    deferred; the journal keeps a retry from sending twice what
 *    Microsoft already accepted.
 *
 * Only the C library: nothing here may cost what the daemon saves.
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sysexits.h>
#include <unistd.h>

#include "handoff_wire.h"

extern char **environ;

#ifndef M3_HANDOFF_SOCKET
#define M3_HANDOFF_SOCKET "/run/m365relay/transport.sock"
#endif

static int
fall_back(const char *transport, char **args)
{
	execv(transport, args);
	/* pipe(8) reports our first line; 75 defers */
	printf("4.3.0 m365-handoff: cannot run %s: %s\n", transport, strerror(errno));
	return EX_TEMPFAIL;
}

static int
connect_to(const char *path)
{
	struct sockaddr_un sun;
	int fd;

	if (strlen(path) >= sizeof(sun.sun_path))
		return -1;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* request - the strings (args, then the environment) in one block; NULL
 * when they do not fit a request: the transport runs itself then */
static char *
request(char **args, int nargs, uint32_t *envc, uint32_t *len)
{
	size_t total = 0, off = 0, i, n = 0;
	char *block;

	for (i = 0; i < (size_t)nargs; i++)
		total += strlen(args[i]) + 1;
	for (i = 0; environ != NULL && environ[i] != NULL; i++)
		if (strchr(environ[i], '=') != NULL && environ[i][0] != '=') {
			total += strlen(environ[i]) + 1;
			n++;
		}
	if (nargs > HANDOFF_MAX_ARGS || n > HANDOFF_MAX_ENV || total > HANDOFF_MAX_LEN)
		return NULL;
	if ((block = malloc(total ? total : 1)) == NULL)
		return NULL;
	for (i = 0; i < (size_t)nargs; i++) {
		memcpy(block + off, args[i], strlen(args[i]) + 1);
		off += strlen(args[i]) + 1;
	}
	for (i = 0; environ != NULL && environ[i] != NULL; i++)
		if (strchr(environ[i], '=') != NULL && environ[i][0] != '=') {
			memcpy(block + off, environ[i], strlen(environ[i]) + 1);
			off += strlen(environ[i]) + 1;
		}
	*envc = (uint32_t)n;
	*len = (uint32_t)total;
	return block;
}

/* send_all - the header with our three descriptors, then the strings */
static int
send_all(int fd, const unsigned char *hdr, const char *block, size_t len)
{
	int fds[3] = {0, 1, 2};
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(fds))];
	} cm;
	struct iovec iov = {(void *)hdr, HANDOFF_HDR};
	struct msghdr mh;
	size_t off = 0;
	ssize_t n;

	memset(&mh, 0, sizeof(mh));
	memset(&cm, 0, sizeof(cm));
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cm.buf;
	mh.msg_controllen = sizeof(cm.buf);
	cm.h.cmsg_level = SOL_SOCKET;
	cm.h.cmsg_type = SCM_RIGHTS;
	cm.h.cmsg_len = CMSG_LEN(sizeof(fds));
	memcpy(CMSG_DATA(&cm.h), fds, sizeof(fds));
	do
		n = sendmsg(fd, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n != HANDOFF_HDR)
		return -1;
	while (off < len) {
		n = send(fd, block + off, len - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		off += (size_t)n;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	const char *sock = M3_HANDOFF_SOCKET, *transport = M3_TRANSPORT_PATH;
	unsigned char hdr[HANDOFF_HDR], status;
	uint32_t envc, len;
	char *block, **args;
	int i = 1, fd, nargs;
	ssize_t n;

	/* Our options first, not getopt: the rest is m365-transport's, as given. */
	for (; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "-S") == 0)
			sock = argv[i + 1];
		else if (strcmp(argv[i], "-T") == 0)
			transport = argv[i + 1];
		else
			break;
	}
	if (i < argc && (strcmp(argv[i], "-V") == 0 || strcmp(argv[i], "-h") == 0) &&
	    i + 1 == argc) {
		if (argv[i][1] == 'V')
			printf("m365-handoff (%s) %s\n", PACKAGE_NAME, PACKAGE_VERSION);
		else
			printf("usage: m365-handoff [-S SOCKET] [-T TRANSPORT] "
			       "M365-TRANSPORT-ARGUMENT...\n"
			       "  -S  the daemon's socket (%s)\n"
			       "  -T  the m365-transport run when no daemon listens (%s)\n",
			       M3_HANDOFF_SOCKET, M3_TRANSPORT_PATH);
		return 0;
	}
	/* m365-transport's command line, whoever runs it: a worker or exec */
	args = argv + i - 1;
	nargs = argc - i + 1;
	args[0] = (char *)"m365-transport";
	signal(SIGPIPE, SIG_IGN);
	if ((fd = connect_to(sock)) < 0)
		return fall_back(transport, args);
	if ((block = request(args, nargs, &envc, &len)) == NULL) {
		close(fd);
		return fall_back(transport, args);
	}
	handoff_header(hdr, (uint32_t)nargs, envc, len);
	/* Not sent whole: no worker has started the delivery (it reads the
	 * request to its end first); ours is the same. */
	if (send_all(fd, hdr, block, len) < 0) {
		close(fd);
		free(block);
		return fall_back(transport, args);
	}
	free(block);
	do
		n = read(fd, &status, 1);
	while (n < 0 && errno == EINTR);
	if (n == 1)
		return status;
	printf("4.3.0 m365-handoff: the daemon's worker ended without an exit status "
	       "(the mail log tells why); deferred\n");
	return EX_TEMPFAIL;
}
