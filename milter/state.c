/*
 * state.c - the worker's view of the state store and its numbers:
 *
 *  - the store, opened on first use (never before the fork: an LMDB
 *    environment must not cross one) and reopened when a reload changes
 *    the store settings;
 *  - admission at end of message (step 6, after policy.h's five): the
 *    mailbox's windows in the "adm" namespace, and what to answer over a
 *    limit or when the store fails;
 *  - the store's health, logged once per change (failing / recovered);
 *  - counters of verdicts by reason, and the Prometheus listener that
 *    shows them with each mailbox's counters.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "sbuf.h"
#include "milter.h"
#include "store.h"
#include "util.h"

#define METRICS_MAX (16 * 1024 * 1024) /* the /metrics page: ~1 KiB a mailbox */

static pthread_rwlock_t store_lock = PTHREAD_RWLOCK_INITIALIZER;
static struct store *cur_store;
static struct store_conf cur_store_conf;
static char cur_path[1024], cur_host[256], cur_prefix[64];
static pthread_mutex_t health_lock = PTHREAD_MUTEX_INITIALIZER;
static bool store_failing;
static unsigned long store_errors;

static bool
same_store(const struct store_conf *a, const struct store_conf *b)
{
	return a->backend == b->backend && strcmp(a->path ? a->path : "", cur_path) == 0 &&
	       strcmp(a->redis_host ? a->redis_host : "", cur_host) == 0 &&
	       a->redis_port == b->redis_port && a->redis_db == b->redis_db &&
	       strcmp(a->prefix ? a->prefix : "", cur_prefix) == 0 &&
	       a->size_mb == b->size_mb;
}

/* health - log the store's state when it changes; count failures */
static void
health(int rc, const struct store_err *e)
{
	pthread_mutex_lock(&health_lock);
	if (rc == STORE_FAIL) {
		store_errors++;
		if (!store_failing)
			log_errx("state store failing: %s (answering on_error until it "
				 "recovers)", e->msg);
		store_failing = true;
	} else if (store_failing) {
		log_info("state store recovered");
		store_failing = false;
	}
	pthread_mutex_unlock(&health_lock);
}

/* with_store - the store for conf, read-locked; NULL (err set) if it cannot open */
static struct store *
with_store(const struct conf *conf, struct store_err *err)
{
	pthread_rwlock_rdlock(&store_lock);
	if (cur_store != NULL && same_store(&conf->store, &cur_store_conf))
		return cur_store;
	pthread_rwlock_unlock(&store_lock);
	pthread_rwlock_wrlock(&store_lock);
	if (cur_store == NULL || !same_store(&conf->store, &cur_store_conf)) {
		store_close(cur_store);
		cur_store = store_open(conf, err);
		cur_store_conf = conf->store;
		m3_strlcpy(cur_path, conf->store.path ? conf->store.path : "", sizeof(cur_path));
		m3_strlcpy(cur_host, conf->store.redis_host ? conf->store.redis_host : "",
			   sizeof(cur_host));
		m3_strlcpy(cur_prefix, conf->store.prefix ? conf->store.prefix : "",
			   sizeof(cur_prefix));
	}
	pthread_rwlock_unlock(&store_lock);
	pthread_rwlock_rdlock(&store_lock);
	if (cur_store == NULL) {
		pthread_rwlock_unlock(&store_lock);
		return NULL;
	}
	return cur_store;
}

static void
done_store(void)
{
	pthread_rwlock_unlock(&store_lock);
}

static void
set(struct reply *r, enum verdict v, const char *code, const char *xcode,
    const char *reason)
{
	r->verdict = v;
	m3_strlcpy(r->code, code, sizeof(r->code));
	m3_strlcpy(r->xcode, xcode, sizeof(r->xcode));
	r->reason = reason;
}

/* over - the answer for a mailbox over a limit, per the configured action */
static void
over(enum fail_action act, struct reply *r, const char *reason, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void
over(enum fail_action act, struct reply *r, const char *reason, const char *fmt, ...)
{
	va_list ap;

	if (act == FAIL_ACCEPT)
		return;
	if (act == FAIL_REJECT)
		set(r, VERDICT_REJECT, "550", "5.7.0", reason);
	else
		set(r, VERDICT_TEMPFAIL, "451", "4.7.0", reason);
	va_start(ap, fmt);
	vsnprintf(r->text, sizeof(r->text), fmt, ap);
	va_end(ap);
}

static const char *
utc(uint64_t ms, char *buf, size_t size)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, size, "%H:%M:%SZ", &tm);
	return buf;
}

void
admission(const struct conf *conf, const struct policy_msg *m, struct reply *r)
{
	const struct mailbox_conf *mb = m->mailbox;
	enum fail_action ma = conf->milter.messages_action, ra = conf->milter.recipients_action;
	struct store_err e = {""};
	struct store *st;
	uint64_t now = store_now(), free_at = 0;
	char when[32], lim[32];
	int rc;

	r->verdict = VERDICT_ACCEPT;
	if (m->mode != MODE_SMTP_AUTH || mb == NULL || (ma == FAIL_ACCEPT && ra == FAIL_ACCEPT))
		return; /* nothing to limit here: the transport paces */
	st = with_store(conf, &e);
	if (st == NULL) {
		health(STORE_FAIL, &e);
		goto store_failed;
	}
	if (ra != FAIL_ACCEPT) {
		rc = store_rcpt_take(st, "adm", mb->name, &mb->recipients,
				     m->n_internal + m->n_external, now, &free_at, &e);
		health(rc, &e);
		if (rc == STORE_FAIL) {
			done_store();
			goto store_failed;
		}
		if (rc == STORE_FULL) {
			done_store();
			over(ra, r, "recipient-limit", "%s reached %s recipients; retry after %s",
			     mb->name, limit_format(&mb->recipients, lim, sizeof(lim)),
			     free_at == UINT64_MAX ? "never (more than the limit at once)"
						   : utc(free_at, when, sizeof(when)));
			return;
		}
	}
	if (ma != FAIL_ACCEPT) {
		rc = store_msg_take(st, "adm", mb->name, mb->messages.count,
				    mb->messages.window * 1000, now, &free_at, &e);
		health(rc, &e);
		if (rc == STORE_FAIL) {
			done_store();
			goto store_failed;
		}
		if (rc == STORE_FULL) {
			done_store();
			over(ma, r, "message-limit", "%s reached %s messages; retry after %s",
			     mb->name, limit_format(&mb->messages, lim, sizeof(lim)),
			     utc(free_at, when, sizeof(when)));
			return;
		}
	}
	done_store();
	return;
store_failed:
	switch (conf->store.on_error) {
	case FAIL_ACCEPT:
		return;
	case FAIL_REJECT:
		set(r, VERDICT_REJECT, "550", "5.3.0", "store-error");
		break;
	case FAIL_TEMPFAIL:
		set(r, VERDICT_TEMPFAIL, "451", "4.3.0", "store-error");
		break;
	}
	snprintf(r->text, sizeof(r->text), "Gateway state store unavailable; try again later");
}

/* Metrics ------------------------------------------------------------------------------ */

static const char *reasons[] = {
	"ok", "unknown-submitter", "direct-send-external", "no-external-route",
	"rcpt-syntax", "send-as-denied", "send-as-denied-mailbox", "no-from",
	"several-from", "from-several-addresses", "from-syntax", "several-sender",
	"sender-syntax", "recipients-per-message", "message-limit", "recipient-limit",
	"store-error", "internal-error", "aborted", "other"};

static pthread_mutex_t count_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long counts[3][NELEM(reasons)];

void
metrics_count(enum verdict v, const char *reason)
{
	size_t i;

	for (i = 0; i + 1 < NELEM(reasons); i++)
		if (reason != NULL && strcmp(reason, reasons[i]) == 0)
			break;
	pthread_mutex_lock(&count_lock);
	counts[v][i]++;
	pthread_mutex_unlock(&count_lock);
}

static void
render(struct sbuf *b)
{
	static const char *vnames[] = {"accept", "reject", "tempfail"};
	struct snapshot *snap = snap_get();
	struct store_err e;
	struct store *st;
	uint64_t now = store_now();
	size_t v, i;

	sbuf_addf(b, "# HELP m365relay_verdicts_total Messages by verdict and reason.\n"
		   "# TYPE m365relay_verdicts_total counter\n");
	pthread_mutex_lock(&count_lock);
	for (v = 0; v < 3; v++)
		for (i = 0; i < NELEM(reasons); i++)
			if (counts[v][i] > 0 || (v == 0 && i == 0))
				sbuf_addf(b, "m365relay_verdicts_total{verdict=\"%s\",reason=\"%s\"} %lu\n",
					vnames[v], reasons[i], counts[v][i]);
	pthread_mutex_unlock(&count_lock);
	pthread_mutex_lock(&health_lock);
	sbuf_addf(b, "# HELP m365relay_store_errors_total State store operations that failed.\n"
		   "# TYPE m365relay_store_errors_total counter\n"
		   "m365relay_store_errors_total %lu\n"
		   "# HELP m365relay_store_up Whether the last state store operation worked.\n"
		   "# TYPE m365relay_store_up gauge\nm365relay_store_up %d\n",
		store_errors, store_failing ? 0 : 1);
	pthread_mutex_unlock(&health_lock);
	if (snap == NULL)
		return;
	st = with_store(snap->conf, &e);
	if (st != NULL) {
		sbuf_addf(b, "# HELP m365relay_mailbox_messages Messages in the mailbox's window "
			   "(stage sent: by the transports; admitted: by the milter).\n"
			   "# TYPE m365relay_mailbox_messages gauge\n");
		for (i = 0; i < snap->conf->n_mailboxes; i++) {
			const struct mailbox_conf *m = &snap->conf->mailboxes[i];
			struct store_usage out, adm;
			if (store_usage(st, "out", m, now, &out, &e) < 0 ||
			    store_usage(st, "adm", m, now, &adm, &e) < 0)
				continue;
			sbuf_addf(b,
				"m365relay_mailbox_messages{mailbox=\"%s\",stage=\"sent\"} %llu\n"
				"m365relay_mailbox_messages{mailbox=\"%s\",stage=\"admitted\"} %llu\n"
				"m365relay_mailbox_messages_limit{mailbox=\"%s\",window_seconds=\"%lu\"} %lu\n"
				"m365relay_mailbox_recipients{mailbox=\"%s\",stage=\"sent\"} %llu\n"
				"m365relay_mailbox_recipients{mailbox=\"%s\",stage=\"admitted\"} %llu\n"
				"m365relay_mailbox_recipients_limit{mailbox=\"%s\",window_seconds=\"%lu\"} %lu\n"
				"m365relay_mailbox_sessions{mailbox=\"%s\"} %llu\n"
				"m365relay_mailbox_sessions_limit{mailbox=\"%s\"} %u\n"
				"m365relay_mailbox_next_message_seconds{mailbox=\"%s\"} %.3f\n",
				m->name, (unsigned long long)out.msgs, m->name,
				(unsigned long long)adm.msgs, m->name, m->messages.window,
				m->messages.count, m->name, (unsigned long long)out.rcpts, m->name,
				(unsigned long long)adm.rcpts, m->name, m->recipients.window,
				m->recipients.count, m->name, (unsigned long long)out.sessions,
				m->name, m->sessions, m->name,
				out.msg_free_at > now ? (double)(out.msg_free_at - now) / 1000 : 0.0);
		}
		done_store();
	}
	snap_put(snap);
}

static void
serve(int fd)
{
	struct pollfd p = {fd, POLLIN, 0};
	struct sbuf b, head;
	char req[1024];
	ssize_t n;

	if (poll(&p, 1, 2000) <= 0)
		return;
	n = recv(fd, req, sizeof(req) - 1, 0);
	if (n <= 0)
		return;
	req[n] = '\0';
	if (strncmp(req, "GET /metrics ", 13) != 0 && strncmp(req, "GET / ", 6) != 0) {
		const char *nf = "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n";
		(void)!send(fd, nf, strlen(nf), MSG_NOSIGNAL);
		return;
	}
	sbuf_init(&b, METRICS_MAX);
	sbuf_init(&head, 256);
	render(&b);
	if (b.failed) {
		const char *err = "HTTP/1.0 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n";
		log_warnx("metrics: the page is larger than %d bytes, or out of memory",
			  METRICS_MAX);
		(void)!send(fd, err, strlen(err), MSG_NOSIGNAL);
	} else if (sbuf_addf(&head,
			     "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4; "
			     "charset=utf-8\r\nContent-Length: %zu\r\n\r\n",
			     b.len) == 0 &&
		   send(fd, head.s, head.len, MSG_NOSIGNAL) == (ssize_t)head.len) {
		(void)!send(fd, sbuf_str(&b), b.len, MSG_NOSIGNAL);
	}
	sbuf_free(&b);
	sbuf_free(&head);
}

static void *
metrics_thread(void *arg)
{
	int lfd = (int)(intptr_t)arg;

	for (;;) {
		int fd = accept(lfd, NULL, NULL);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			log_warn("metrics: accept");
			sleep(1);
			continue;
		}
		serve(fd);
		close(fd);
	}
	return NULL;
}

int
metrics_start(const struct conf *conf)
{
	struct addrinfo hints, *res;
	char host[256];
	const char *colon;
	pthread_t tid;
	int fd, one = 1, rc;

	if (conf->milter.metrics_listen == NULL)
		return 0;
	colon = strrchr(conf->milter.metrics_listen, ':');
	snprintf(host, sizeof(host), "%.*s", (int)(colon - conf->milter.metrics_listen),
		 conf->milter.metrics_listen);
	if (host[0] == '[') { /* [::1]:9365 */
		memmove(host, host + 1, strlen(host));
		host[strcspn(host, "]")] = '\0';
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST;
	rc = getaddrinfo(host, colon + 1, &hints, &res);
	if (rc != 0) {
		log_errx("metrics_listen %s: %s", conf->milter.metrics_listen, gai_strerror(rc));
		return -1;
	}
	fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 16) < 0) {
		log_err("metrics_listen %s", conf->milter.metrics_listen);
		if (fd >= 0)
			close(fd);
		freeaddrinfo(res);
		return -1;
	}
	freeaddrinfo(res);
	if (pthread_create(&tid, NULL, metrics_thread, (void *)(intptr_t)fd) != 0) {
		close(fd);
		return -1;
	}
	pthread_detach(tid);
	log_info("metrics on http://%s/metrics", conf->milter.metrics_listen);
	return 0;
}
