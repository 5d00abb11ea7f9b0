/*
 * metrics.c - the Prometheus listener of the worker (milter {
 * metrics_listen }), served by libmicrohttpd.  state.c builds the page
 * (metrics_render); this file only answers HTTP: GET /metrics and GET /
 * with the page, 405 for any other method, 404 for any other path.
 *
 * Process life: the worker starts it once, after the fork (daemon.c), and
 * it lives as long as the worker: a reload keeps it (the address is read at
 * start only), a restarted worker binds it again.  The socket is ours
 * (bound and listening before libmicrohttpd sees it), so a bind failure is
 * logged the way it always was, and, as before, is not fatal: the milter
 * runs without its page.  libmicrohttpd runs one internal thread
 * (epoll), with a connection limit and an idle timeout, and that thread
 * blocks every signal: SIGTERM and SIGUSR1 belong to libmilter's and the
 * reload thread's sigwait().
 */
#include "config.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "util/log.h"
#include "milter.h"
#include "util/sbuf.h"

#define METRICS_MAX         (16 * 1024 * 1024) /* the page: ~1 KiB a mailbox */
#define METRICS_TIMEOUT     10                 /* seconds a connection may idle */
#define METRICS_CONNECTIONS 16                 /* connections at once */

static struct MHD_Daemon *mhd;

/* mhd_log - libmicrohttpd's own messages, through our log */
static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

static void
mhd_log(void *cls, const char *fmt, va_list ap)
{
	char buf[512];
	size_t n;

	(void)cls;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	n = strlen(buf);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	log_warnx("metrics: %s", buf);
}

/* reply - queue a response of status with body (copied); MHD_NO on failure */
static enum MHD_Result
reply(struct MHD_Connection *c, unsigned status, const char *type, const char *body, size_t len,
      bool allow_get)
{
	struct MHD_Response *r;
	enum MHD_Result rc;

	r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	if (r == NULL)
		return MHD_NO; /* libmicrohttpd closes the connection */
	if ((type != NULL &&
	     MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type) != MHD_YES) ||
	    (allow_get && MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET") != MHD_YES)) {
		MHD_destroy_response(r);
		return MHD_NO;
	}
	rc = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return rc;
}

/* answer - one request: the page, or 404/405/500 */
static enum MHD_Result
answer(void *cls, struct MHD_Connection *c, const char *url, const char *method,
       const char *version, const char *upload, size_t *upload_size, void **state)
{
	static const char text[] = "text/plain; charset=utf-8";
	static const char only_get[] = "only GET\n", not_found[] = "not found: try /metrics\n";
	struct sbuf b;
	enum MHD_Result rc;

	(void)cls;
	(void)version;
	(void)upload;
	(void)upload_size;
	(void)state;
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0)
		return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, text, only_get, sizeof(only_get) - 1,
		             true);
	if (strcmp(url, "/metrics") != 0 && strcmp(url, "/") != 0)
		return reply(c, MHD_HTTP_NOT_FOUND, text, not_found, sizeof(not_found) - 1, false);
	sbuf_init(&b, METRICS_MAX);
	metrics_render(&b);
	if (b.failed) {
		log_warnx("metrics: the page is larger than %d bytes, or out of memory",
		          METRICS_MAX);
		rc = reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, text, "", 0, false);
	} else {
		rc = reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", sbuf_str(&b),
		           b.len, false);
	}
	sbuf_free(&b);
	return rc;
}

/* loopback - whether a is 127.0.0.0/8, ::1 or ::ffff:127.0.0.0/104 */
static bool
loopback(const struct sockaddr *a)
{
	if (a->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)a;
		return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	}
	if (a->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)a;
		return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) ||
		       (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && in6->sin6_addr.s6_addr[12] == 127);
	}
	return false;
}

int
metrics_start(const struct conf *conf)
{
	struct addrinfo hints, *res;
	sigset_t all, old;
	char host[256];
	const char *listen_on = conf->milter.metrics_listen, *colon;
	int fd, mfd, one = 1, rc;

	if (listen_on == NULL)
		return 0;
	if (mhd != NULL)
		return 0;                /* started once per worker; a reload keeps it */
	colon = strrchr(listen_on, ':'); /* conf.c made sure there is one */
	if (colon == NULL || (size_t)(colon - listen_on) >= sizeof(host)) {
		log_errx("metrics_listen %s: not ADDRESS:PORT", listen_on);
		return -1;
	}
	snprintf(host, sizeof(host), "%.*s", (int)(colon - listen_on), listen_on);
	if (host[0] == '[') { /* [::1]:9365 */
		memmove(host, host + 1, strlen(host));
		host[strcspn(host, "]")] = '\0';
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST;
	rc = getaddrinfo(host, colon + 1, &hints, &res);
	if (rc != 0) {
		log_errx("metrics_listen %s: %s", listen_on, gai_strerror(rc));
		return -1;
	}
	if (!loopback(res->ai_addr))
		log_warnx("metrics_listen %s: not loopback; the page names mailboxes and "
		          "counts, protect it",
		          listen_on);
	fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 16) < 0) {
		log_err("metrics_listen %s", listen_on);
		if (fd >= 0)
			close(fd);
		freeaddrinfo(res);
		return -1;
	}
	freeaddrinfo(res);
	/*
	 * libmicrohttpd gets a duplicate: on success it owns it; on failure
	 * some of its paths close it and some do not, so we never close that
	 * number ourselves and shut the socket down through ours instead.
	 */
	mfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (mfd < 0) {
		log_err("metrics_listen %s", listen_on);
		close(fd);
		return -1;
	}
	/* Its thread inherits our mask: let it take no signal at all. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	mhd = MHD_start_daemon(
	    MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL, answer, NULL,
	    MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)mfd,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)METRICS_TIMEOUT,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned int)METRICS_CONNECTIONS, MHD_OPTION_END);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (mhd == NULL) {
		log_errx("metrics_listen %s: cannot start the HTTP server (libmicrohttpd)",
		         listen_on);
		shutdown(fd, SHUT_RDWR);
		close(fd);
		return -1;
	}
	close(fd);
	log_info("metrics on http://%s/metrics", listen_on);
	return 0;
}
