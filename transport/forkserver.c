/*
 * forkserver.c - m365-transport -D SOCKET: the daemon m365-handoff hands
 * pipe(8) deliveries to.
 *
 * A pipe(8) delivery starts a process, loads OpenSSL and sets it up,
 * reads the configuration, opens the store, and makes a TCP connection
 * and a TLS handshake to Microsoft 365 (resumed, at best), for one
 * message.  This daemon sets OpenSSL up once and runs WORKERS worker
 * processes, each taking requests in turn from the socket and running
 * each delivery exactly as m365-transport run by pipe(8) would: the same
 * main path (pipe_main), with the client's command line, environment,
 * standard input (the message), output and error, passed over the socket
 * (handoff_wire.h); its exit status goes back as one byte.  What a
 * worker keeps from one delivery to the next is what the LMTP service
 * keeps (pool.h): the configuration (read again when one of its files
 * changes, and at least every HANDOFF_CONF_S seconds), the store handle,
 * and each authenticated TLS session to Microsoft 365 that ended
 * cleanly, RSET before it is used again, within the mailbox's session
 * limit counted across every process.  Each worker ends after
 * WORKER_MAX_USE deliveries (as Postfix's max_use), and the daemon
 * starts another.
 *
 * Trust: the socket is the service user's alone (mode 0600, in a
 * directory of its own), and each connection's peer must be that user
 * (SO_PEERCRED): the request names the client address and SASL login
 * the delivery decides by, as pipe(8)'s command line does.
 *
 * Failures: a request that does not parse ends its connection with no
 * status (m365-handoff defers, 75) and a log line.  A worker that dies
 * is replaced.  SIGTERM stops the daemon taking requests and removes the
 * socket (new deliveries run m365-transport themselves); each worker
 * ends its delivery under way, closes its sessions, and exits.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "deliver.h"
#include "store/store.h"
#include "forkserver.h"
#include "handoff_wire.h"
#include "net/net.h"
#include "util/log.h"
#include "util/util.h"

#define WORKERS        10   /* m365ctl postfix-config's pipe(8) process limit */
#define WORKER_MAX_USE 1000 /* deliveries, then a fresh worker */
#define HANDOFF_CONF_S 60   /* the configuration is read again at least this often */
#define REQUEST_S      10   /* the request is written at once: a stalled one ends */

static volatile sig_atomic_t stopping;

static void
on_term(int sig)
{
	(void)sig;
	stopping = 1;
}

static void
on_child(int sig)
{
	(void)sig; /* interrupts poll(); the loop reaps */
}

/* read_full - n bytes, each wait bounded; -1 on an error, a stall or the end */
static int
read_full(int fd, void *buf, size_t n)
{
	size_t off = 0;

	while (off < n) {
		struct pollfd p = {fd, POLLIN, 0};
		ssize_t r;
		if (poll(&p, 1, REQUEST_S * 1000) <= 0)
			return -1;
		r = read(fd, (char *)buf + off, n - off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		off += (size_t)r;
	}
	return 0;
}

/* take_fds - the header, and the three descriptors sent with it */
static int
take_fds(int conn, unsigned char hdr[HANDOFF_HDR], int fds[3], const char **why)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(3 * sizeof(int))];
	} cm;
	struct iovec iov = {hdr, HANDOFF_HDR};
	struct msghdr mh;
	struct cmsghdr *c;
	struct pollfd p = {conn, POLLIN, 0};
	ssize_t n;

	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cm.buf;
	mh.msg_controllen = sizeof(cm.buf);
	if (poll(&p, 1, REQUEST_S * 1000) <= 0) {
		*why = "no request";
		return -1;
	}
	n = recvmsg(conn, &mh, MSG_CMSG_CLOEXEC | MSG_WAITALL);
	if (n == 0) {
		*why = NULL; /* connected and closed: a probe (is anyone listening?) */
		return -1;
	}
	for (c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
		    c->cmsg_len == CMSG_LEN(3 * sizeof(int))) {
			memcpy(fds, CMSG_DATA(c), 3 * sizeof(int));
			break;
		}
	if (c == NULL || (mh.msg_flags & MSG_CTRUNC)) {
		/* descriptors we did not keep may still have come: closed at exit */
		*why = "no standard input, output and error with the request";
		return -1;
	}
	if (n != HANDOFF_HDR) {
		*why = "a short request header";
		return -1;
	}
	return 0;
}

static uint64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* unchanged - every file c was read from stats as it did then */
static bool
unchanged(const struct conf *c)
{
	size_t i;

	if (c->n_sources == 0 || c->sources_unsure)
		return false; /* nothing recorded to compare: read it again */
	for (i = 0; i < c->n_sources; i++) {
		const struct conf_source *f = &c->sources[i];
		struct stat st;
		/* Changed less than 2 s before it was read: a second change in
		 * the same clock tick would stat the same.  Read again until
		 * the load is well after the last change (conf_snap.c's rule). */
		if (f->mtime_s + 2 >= c->sources_t0_s || f->ctime_s + 2 >= c->sources_t0_s)
			return false;
		if (stat(f->path, &st) < 0 || (unsigned long long)st.st_dev != f->dev ||
		    (unsigned long long)st.st_ino != f->ino ||
		    (unsigned long long)st.st_size != f->size || st.st_mtim.tv_sec != f->mtime_s ||
		    st.st_mtim.tv_nsec != f->mtime_ns || st.st_ctim.tv_sec != f->ctime_s ||
		    st.st_ctim.tv_nsec != f->ctime_ns)
			return false;
	}
	return true;
}

const struct conf *
handoff_conf(struct handoff_worker *w, const char *conf_file)
{
	uint64_t now = mono_ms();
	char why[PATH_MAX + 128];
	bool from_snapshot;

	if (w->conf != NULL && strcmp(w->conf_file, conf_file) == 0 &&
	    now - w->conf_at < HANDOFF_CONF_S * 1000 && unchanged(w->conf))
		return w->conf;
	if (w->conf != NULL) {
		/* the sessions were opened under the old one: closed first */
		pool_close(&w->pool);
		conf_free((struct conf *)w->conf);
		w->conf = NULL;
	}
	/* The compiled snapshot, else the text, recording what it read (as
	 * check-config does) so that the next delivery can tell a change. */
	w->conf = conf_snap_load(conf_file, why, sizeof(why));
	from_snapshot = w->conf != NULL;
	if (w->conf == NULL) {
		struct diag diag = {0};
		size_t i;
		log_debug("configuration snapshot not used: %s", why);
		w->conf = conf_load_flags(conf_file, &diag, CONF_SNAPSHOT);
		for (i = 0; i < diag.n; i++)
			if (diag.is_error[i])
				log_line(1, diag.lines[i]);
		diag_free(&diag);
	}
	if (w->conf == NULL)
		return NULL;
	log_debug("configuration %s read from %s", conf_file,
	          from_snapshot ? "its compiled snapshot" : "the text");
	m3_strlcpy(w->conf_file, conf_file, sizeof(w->conf_file));
	w->conf_at = now;
	pool_init(&w->pool, w->conf);
	w->pool.no_slotted = true; /* relay and Direct Send sessions only (pool.h) */
	return w->conf;
}

/*
 * serve_one - in a worker: the request, the delivery, its exit status.
 * The client's descriptors are 0, 1 and 2 for the delivery, and the
 * worker's own (saved) again before the status goes back: pipe(8) must
 * see the end of the output when the client exits.
 */
static void
serve_one(int conn, const int saved[3], struct handoff_worker *w,
          int (*run)(int, char **, struct handoff_worker *))
{
	unsigned char hdr[HANDOFF_HDR], status;
	struct handoff_req r;
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	int fds[3] = {-1, -1, -1}, i, rc;
	char *block = NULL, **argv = NULL, **envp = NULL, clock_offset[32];
	const char *why = NULL, *clock_env;
	struct timeval tv = {REQUEST_S, 0};

	if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0) {
		log_warn("handoff: SO_PEERCRED");
		return;
	}
	/* a request that stops half-way does not hold the worker */
	(void)setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (cred.uid != geteuid()) {
		log_warnx("handoff: refused a request from uid %ld, pid %ld (only this service "
		          "user's m365-handoff may hand a delivery over)",
		          (long)cred.uid, (long)cred.pid);
		return;
	}
	if (take_fds(conn, hdr, fds, &why) < 0 || handoff_parse_header(hdr, &r, &why) < 0) {
		if (why != NULL)
			log_warnx("handoff: request from pid %ld refused: %s", (long)cred.pid, why);
		goto out;
	}
	block = malloc(r.len);
	argv = calloc((size_t)r.argc + 1, sizeof(*argv));
	envp = calloc((size_t)r.envc + 1, sizeof(*envp));
	if (block == NULL || argv == NULL || envp == NULL) {
		log_warnx("handoff: request from pid %ld: out of memory", (long)cred.pid);
		goto out;
	}
	if (read_full(conn, block, r.len) < 0) {
		log_warnx("handoff: request from pid %ld refused: cut short", (long)cred.pid);
		goto out;
	}
	if (handoff_split(block, &r, argv, envp, &why) < 0) {
		log_warnx("handoff: request from pid %ld refused: %s", (long)cred.pid, why);
		goto out;
	}
	for (i = 0; i < 3; i++)
		if (dup2(fds[i], i) < 0) {
			log_warn("handoff: dup2");
			goto restore;
		}
	clearenv();
	for (i = 0; i < (int)r.envc; i++)
		putenv(envp[i]);
	tzset();
	srandom((unsigned)time(NULL) ^ (unsigned)getpid() ^ (unsigned)mono_ms());
	optind = 0;
	rc = run((int)r.argc, argv, w);
	fflush(stdout);
	fflush(stderr);
	/* Its strings are in block.  The tests' clock offset stays: the
	 * kept sessions' times were taken with it, and pool_expire() reads
	 * them with the same clock between requests. */
	clock_env = getenv("M365RELAY_TEST_CLOCK");
	if (clock_env != NULL)
		m3_strlcpy(clock_offset, clock_env, sizeof(clock_offset));
	clearenv();
	if (clock_env != NULL)
		setenv("M365RELAY_TEST_CLOCK", clock_offset, 1);
	for (i = 0; i < 3; i++)
		if (dup2(saved[i], i) < 0)
			log_warn("handoff: dup2");
	status = (unsigned char)rc;
	if (write(conn, &status, 1) != 1)
		log_warn("handoff: exit status %d not sent back", rc);
	goto out;
restore:
	for (i = 0; i < 3; i++)
		(void)dup2(saved[i], i);
out:
	for (i = 0; i < 3; i++)
		if (fds[i] > 2)
			close(fds[i]);
	free(block);
	free(argv);
	free(envp);
}

/* worker - take requests until SIGTERM or WORKER_MAX_USE of them; never returns */
static void
worker(int lfd, int (*run)(int, char **, struct handoff_worker *))
{
	struct handoff_worker w;
	int saved[3], i, served = 0;

	memset(&w, 0, sizeof(w));
	for (i = 0; i < 3; i++)
		saved[i] = fcntl(i, F_DUPFD_CLOEXEC, 3);
	while (!stopping && served < WORKER_MAX_USE) {
		struct pollfd p = {lfd, POLLIN, 0};
		int wait = 1000, conn;
		if (w.conf != NULL) {
			/* idle sessions close on time, due journal drops go */
			int next = pool_expire(&w.pool, store_now());
			if (next >= 0 && next < wait)
				wait = next + 1;
		}
		if (poll(&p, 1, wait) <= 0)
			continue;
		conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (conn < 0)
			continue; /* another worker took it (EAGAIN), or SIGTERM */
		serve_one(conn, saved, &w, run);
		close(conn);
		served++;
	}
	if (w.conf != NULL) {
		pool_close(&w.pool);
		conf_free((struct conf *)w.conf);
	}
	_exit(0);
}

static int
listen_on(const char *path)
{
	struct sockaddr_un sun, tmp;
	char lock[sizeof(sun.sun_path) + 8];
	mode_t old;
	int fd, probe, lfd;

	/* bound under a temporary name, listening, then renamed: a client
	 * never finds the socket before it takes connections */
	if (strlen(path) + 16 >= sizeof(sun.sun_path)) {
		log_errx("handoff: socket path too long: %s", path);
		return -1;
	}
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, strlen(path) + 1);
	tmp = sun;
	snprintf(tmp.sun_path, sizeof(tmp.sun_path), "%s.%ld", path, (long)getpid());
	/* One daemon per socket: path.lock, held as long as the daemon or
	 * any of its workers lives (they share the open file). */
	snprintf(lock, sizeof(lock), "%s.lock", path);
	lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (lfd < 0) {
		log_err("handoff: %s", lock);
		return -1;
	}
	if (flock(lfd, LOCK_EX | LOCK_NB) < 0) {
		log_errx("handoff: another daemon listens on %s (%s is locked)", path, lock);
		close(lfd);
		return -1;
	}
	/* kept open on purpose: the lock lives with the daemon */
	/* A socket file left by a daemon that died is replaced; a live one is not. */
	probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (probe >= 0 && connect(probe, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
		close(probe);
		log_errx("handoff: another daemon listens on %s", path);
		return -1;
	}
	if (probe >= 0)
		close(probe);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		log_err("handoff: socket");
		return -1;
	}
	(void)unlink(tmp.sun_path);
	old = umask(0177);
	if (bind(fd, (struct sockaddr *)&tmp, sizeof(tmp)) < 0) {
		umask(old);
		log_err("handoff: bind %s", tmp.sun_path);
		close(fd);
		return -1;
	}
	umask(old);
	if (listen(fd, SOMAXCONN) < 0 || rename(tmp.sun_path, path) < 0) {
		log_err("handoff: listen on %s", path);
		close(fd);
		unlink(tmp.sun_path);
		return -1;
	}
	return fd;
}

/* warm_up - what every delivery would set up, done once before the forks */
static void
warm_up(void)
{
	SSL_CTX *ctx;
	EVP_MD *md;
	EVP_MAC *mac;

	OPENSSL_init_ssl(OPENSSL_INIT_NO_ATEXIT | OPENSSL_INIT_LOAD_CONFIG |
	                     OPENSSL_INIT_LOAD_SSL_STRINGS | OPENSSL_INIT_LOAD_CRYPTO_STRINGS,
	                 NULL);
	/* The provider's algorithm tables fill on first fetch: SSL_CTX_new
	 * fetches the ciphers, digests and groups a client offers.  Then
	 * one context made ahead, which each delivery process takes for its
	 * first handshake (still a millisecond to make with warm tables). */
	if ((ctx = SSL_CTX_new(TLS_client_method())) != NULL)
		SSL_CTX_free(ctx);
	if ((md = EVP_MD_fetch(NULL, "SHA256", NULL)) != NULL)
		EVP_MD_free(md);
	if ((mac = EVP_MAC_fetch(NULL, "HMAC", NULL)) != NULL) /* the route's MAC */
		EVP_MAC_free(mac);
	if (net_prepare() < 0)
		log_warnx("handoff: no TLS context made ahead: %s (each delivery makes its own)",
		          ERR_reason_error_string(ERR_peek_last_error()));
}

static pid_t
start_worker(int lfd, int (*run)(int, char **, struct handoff_worker *))
{
	pid_t parent = getpid(), pid = fork();

	if (pid == 0) {
		struct sigaction sa;
		memset(&sa, 0, sizeof(sa));
		sigemptyset(&sa.sa_mask);
		sa.sa_handler = on_term;
		sa.sa_flags = SA_RESTART; /* the delivery under way goes on */
		sigaction(SIGTERM, &sa, NULL);
		sigaction(SIGINT, &sa, NULL);
		signal(SIGCHLD, SIG_DFL);
		/* A daemon killed outright takes its workers with it (after
		 * the delivery under way): none goes on serving its socket. */
		if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != parent)
			_exit(0);
		worker(lfd, run);
	}
	if (pid < 0)
		log_warn("handoff: fork (a worker fewer until the next try)");
	return pid;
}

int
forkserver_serve(const char *path, int (*run)(int, char **, struct handoff_worker *))
{
	struct sigaction sa;
	pid_t pids[WORKERS];
	uint64_t started[WORKERS];
	int lfd, i, alive;

	if (geteuid() == 0) {
		log_errx(
		    "m365-transport refuses to run as root: run the daemon as the service user");
		return 1;
	}
	/* The client's descriptors must land on 0, 1 and 2 (serve_one). */
	while ((lfd = open("/dev/null", O_RDWR | O_CLOEXEC)) >= 0 && lfd <= 2)
		fcntl(lfd, F_SETFD, 0);
	if (lfd > 2)
		close(lfd);
	signal(SIGPIPE, SIG_IGN);
	/* glibc raises its mmap threshold when a large mapped block is
	 * freed; a worker would then zero LMDB's 2 MB dirty list on the
	 * heap, page by page, each time it opens the store (a fresh process
	 * maps it: zero pages, touched only where used).  Fixed at the
	 * default, as a fresh process has it. */
	mallopt(M_MMAP_THRESHOLD, 128 * 1024);
	warm_up();
	if ((lfd = listen_on(path)) < 0)
		return 1;
	/* Workers race for each connection: the ones that lose get EAGAIN. */
	fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK);
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_term; /* no SA_RESTART: poll() returns */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = on_child;
	sigaction(SIGCHLD, &sa, NULL);
	for (i = 0; i < WORKERS; i++) {
		pids[i] = start_worker(lfd, run);
		started[i] = mono_ms();
	}
	log_info("handoff: listening on %s, %d workers", path, WORKERS);
	while (!stopping) {
		int st;
		pid_t pid;
		poll(NULL, 0, 1000);
		while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
			for (i = 0; i < WORKERS && pids[i] != pid; i++)
				;
			if (i == WORKERS)
				continue;
			if (WIFSIGNALED(st))
				log_warnx(
				    "handoff: worker %ld killed by signal %d (a delivery under way "
				    "is deferred)",
				    (long)pid, WTERMSIG(st));
			else if (WEXITSTATUS(st) != 0)
				log_warnx("handoff: worker %ld exited with %d", (long)pid,
				          WEXITSTATUS(st));
			pids[i] = -1;
		}
		for (i = 0; i < WORKERS && !stopping; i++)
			if (pids[i] < 0 && mono_ms() - started[i] >= 1000) {
				/* not faster than once a second: a worker that
				 * dies at once would otherwise spin */
				pids[i] = start_worker(lfd, run);
				started[i] = mono_ms();
			}
	}
	close(lfd);
	unlink(path);
	for (i = alive = 0; i < WORKERS; i++)
		if (pids[i] > 0 && kill(pids[i], SIGTERM) == 0)
			alive++;
	log_info("handoff: stopped taking requests; waiting for %d worker%s to end", alive,
	         alive == 1 ? "" : "s");
	while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
		;
	return 0;
}
