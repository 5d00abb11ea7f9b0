/*
 * metrics.c - the Prometheus listener of the worker (milter {
 * metrics_listen }), served by libmicrohttpd, and the page it serves:
 * the verdicts counted by reason, the store's health (storehandle.c) and
 * each mailbox's windows as the store holds them.  HTTP: GET /metrics and
 * GET / with the page, 405 for any other method, 404 for any other path.
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
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "util/log.h"
#include "milter.h"
#include "util/sbuf.h"
#include "util/util.h"

#define METRICS_MAX         (16 * 1024 * 1024) /* the page: ~1 KiB a mailbox */
#define METRICS_TIMEOUT     10                 /* seconds a connection may idle */
#define METRICS_CONNECTIONS 16                 /* connections at once */

static struct MHD_Daemon *mhd;

/* The page ------------------------------------------------------------------------- */

static pthread_mutex_t count_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long counts[VERDICT_COUNT][REASON_COUNT];

void
metrics_count(enum verdict v, enum reason reason)
{
	if ((unsigned)v >= VERDICT_COUNT || (unsigned)reason >= REASON_COUNT)
		return;
	pthread_mutex_lock(&count_lock);
	counts[v][reason]++;
	pthread_mutex_unlock(&count_lock);
}

/* add_label - s as a Prometheus label value: backslash, quote and newline escaped */
static void
add_label(struct sbuf *b, const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\' || *s == '"')
			sbuf_addf(b, "\\%c", *s);
		else if (*s == '\n')
			sbuf_adds(b, "\\n");
		else
			sbuf_add(b, s, 1);
	}
}

/* family - a family's HELP and TYPE lines; its samples follow them, all together */
static void
family(struct sbuf *b, const char *name, const char *type, const char *help)
{
	sbuf_addf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* mb_sample - one sample of a mailbox's family: NAME{mailbox="MAILBOX" then fmt */
static void mb_sample(struct sbuf *b, const char *name, const char *mailbox, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
mb_sample(struct sbuf *b, const char *name, const char *mailbox, const char *fmt, ...)
{
	va_list ap;

	sbuf_addf(b, "%s{mailbox=\"", name);
	add_label(b, mailbox);
	sbuf_adds(b, "\"");
	va_start(ap, fmt);
	sbuf_vaddf(b, fmt, ap);
	va_end(ap);
}

struct mb_usage {
	struct store_usage out, adm; /* the transports' namespace, the milter's */
	bool ok;                     /* both read; else the mailbox is left out */
};

/* The mailbox families, in page order: one or two samples per mailbox each. */
enum mb_value {
	MB_MSGS,
	MB_MSGS_LIMIT,
	MB_RCPTS,
	MB_RCPTS_LIMIT,
	MB_SESSIONS,
	MB_SESSIONS_LIMIT,
	MB_NEXT_MSG
};

static const struct {
	const char *name, *help;
	enum mb_value value;
} mb_families[] = {
    {"m365relay_mailbox_messages",
     "Messages in the mailbox's window (stage sent: by the transports; admitted: by the milter).",
     MB_MSGS},
    {"m365relay_mailbox_messages_limit",
     "The mailbox's message limit: messages per window_seconds.", MB_MSGS_LIMIT},
    {"m365relay_mailbox_recipients",
     "Recipients in the mailbox's window (stage sent: by the transports; admitted: by the "
     "milter).",
     MB_RCPTS},
    {"m365relay_mailbox_recipients_limit",
     "The mailbox's recipient limit: recipients per window_seconds.", MB_RCPTS_LIMIT},
    {"m365relay_mailbox_sessions",
     "SMTP sessions to Microsoft 365 the transports hold for the mailbox.", MB_SESSIONS},
    {"m365relay_mailbox_sessions_limit", "The most SMTP sessions the mailbox may hold at once.",
     MB_SESSIONS_LIMIT},
    {"m365relay_mailbox_next_message_seconds",
     "Seconds until the mailbox's message window lets the transports send again (0: now).",
     MB_NEXT_MSG},
};

/* mb_samples - the samples of one family for one mailbox */
static void
mb_samples(struct sbuf *b, const char *name, enum mb_value v, const struct mailbox_conf *m,
           const struct mb_usage *u, uint64_t now)
{
	const struct limit *l = v == MB_MSGS_LIMIT ? &m->messages : &m->recipients;
	uint64_t sent = v == MB_MSGS ? u->out.msgs : u->out.rcpts;
	uint64_t admitted = v == MB_MSGS ? u->adm.msgs : u->adm.rcpts;

	switch (v) {
	case MB_MSGS:
	case MB_RCPTS:
		mb_sample(b, name, m->name, ",stage=\"sent\"} %llu\n", (unsigned long long)sent);
		mb_sample(b, name, m->name, ",stage=\"admitted\"} %llu\n",
		          (unsigned long long)admitted);
		break;
	case MB_MSGS_LIMIT:
	case MB_RCPTS_LIMIT:
		mb_sample(b, name, m->name, ",window_seconds=\"%lu\"} %lu\n", l->window, l->count);
		break;
	case MB_SESSIONS:
		mb_sample(b, name, m->name, "} %llu\n", (unsigned long long)u->out.sessions);
		break;
	case MB_SESSIONS_LIMIT:
		mb_sample(b, name, m->name, "} %u\n", m->sessions);
		break;
	case MB_NEXT_MSG:
		mb_sample(b, name, m->name, "} %.3f\n",
		          u->out.msg_free_at > now ? (double)(u->out.msg_free_at - now) / 1000
		                                   : 0.0);
		break;
	}
}

/* mailbox_families - each mailbox's windows, one family after the other */
static void
mailbox_families(struct sbuf *b, const struct conf *conf, const struct mb_usage *u, uint64_t now)
{
	size_t f, i;

	for (f = 0; f < NELEM(mb_families); f++) {
		family(b, mb_families[f].name, "gauge", mb_families[f].help);
		for (i = 0; i < conf->n_mailboxes; i++)
			if (u[i].ok)
				mb_samples(b, mb_families[f].name, mb_families[f].value,
				           &conf->mailboxes[i], &u[i], now);
	}
}

/*
 * metrics_render - the Prometheus text page: every family's HELP and TYPE,
 * then all of its samples (the exposition format wants a family in one
 * piece).  Every verdict and reason has its series from the start, at 0
 * until counted, so that rate() and alerts see a reason's first message.  b->failed tells the
 * caller the page is not whole.
 */
void
metrics_render(struct sbuf *b)
{
	struct snapshot *snap = snap_get();
	struct store_err e;
	struct store *st;
	struct mb_usage *u;
	uint64_t now = store_now();
	size_t v, i;
	unsigned long errors;
	bool up;

	family(b, "m365relay_verdicts_total", "counter", "Messages by verdict and reason.");
	pthread_mutex_lock(&count_lock);
	for (v = 0; v < VERDICT_COUNT; v++)
		for (i = 0; i < REASON_COUNT; i++)
			sbuf_addf(b, "m365relay_verdicts_total{verdict=\"%s\",reason=\"%s\"} %lu\n",
			          verdict_name((enum verdict)v), reason_name((enum reason)i),
			          counts[v][i]);
	pthread_mutex_unlock(&count_lock);
	mstore_health_read(&errors, &up);
	family(b, "m365relay_store_errors_total", "counter", "State store operations that failed.");
	sbuf_addf(b, "m365relay_store_errors_total %lu\n", errors);
	family(b, "m365relay_store_up", "gauge", "Whether the last state store operation worked.");
	sbuf_addf(b, "m365relay_store_up %d\n", up ? 1 : 0);
	if (snap == NULL)
		return;
	st = mstore_get(snap->conf, &e);
	if (st != NULL) {
		u = calloc(snap->conf->n_mailboxes + 1, sizeof(*u));
		if (u == NULL) {
			b->failed = true; /* out of memory: no page rather than half of one */
		} else {
			for (i = 0; i < snap->conf->n_mailboxes; i++) {
				const struct mailbox_conf *m = &snap->conf->mailboxes[i];
				u[i].ok = store_usage(st, "out", m, now, &u[i].out, &e) >= 0 &&
				          store_usage(st, "adm", m, now, &u[i].adm, &e) >= 0;
			}
		}
		mstore_put();
		if (u != NULL)
			mailbox_families(b, snap->conf, u, now);
		free(u);
	}
	snap_put(snap);
}

/* HTTP ------------------------------------------------------------------------------- */

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
