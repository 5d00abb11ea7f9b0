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
 *  - counters of verdicts by reason, and the Prometheus page that shows
 *    them with each mailbox's counters (metrics_render; metrics.c serves
 *    it over HTTP).
 */
#include "config.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/log.h"
#include "util/sbuf.h"
#include "milter.h"
#include "store/store.h"
#include "util/util.h"

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
	       strcmp(a->prefix ? a->prefix : "", cur_prefix) == 0 && a->size_mb == b->size_mb;
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
			         "recovers)",
			         e->msg);
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
set(struct reply *r, enum verdict v, const char *code, const char *xcode, enum reason reason)
{
	r->verdict = v;
	m3_strlcpy(r->code, code, sizeof(r->code));
	m3_strlcpy(r->xcode, xcode, sizeof(r->xcode));
	r->reason = reason;
}

/* over - the answer for a mailbox over a limit, per the configured action */
static void over(enum fail_action act, struct reply *r, enum reason reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
over(enum fail_action act, struct reply *r, enum reason reason, const char *fmt, ...)
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
	struct store_err e = {0};
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
			over(ra, r, REASON_RECIPIENT_LIMIT,
			     "%s reached %s recipients; retry after %s", mb->name,
			     limit_format(&mb->recipients, lim, sizeof(lim)),
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
			over(ma, r, REASON_MESSAGE_LIMIT, "%s reached %s messages; retry after %s",
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
		set(r, VERDICT_REJECT, "550", "5.3.0", REASON_STORE_ERROR);
		break;
	case FAIL_TEMPFAIL:
		set(r, VERDICT_TEMPFAIL, "451", "4.3.0", REASON_STORE_ERROR);
		break;
	}
	snprintf(r->text, sizeof(r->text), "Gateway state store unavailable; try again later");
}

/* Metrics ------------------------------------------------------------------------------ */

static pthread_mutex_t count_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long counts[3][REASON_COUNT];

void
metrics_count(enum verdict v, enum reason reason)
{
	if ((unsigned)reason >= REASON_COUNT)
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

/* mailbox_families - each mailbox's windows, one family after the other */
static void
mailbox_families(struct sbuf *b, const struct conf *conf, const struct mb_usage *u, uint64_t now)
{
	size_t i, n = conf->n_mailboxes;
	const struct mailbox_conf *m;

	family(b, "m365relay_mailbox_messages", "gauge",
	       "Messages in the mailbox's window (stage sent: by the transports; "
	       "admitted: by the milter).");
	for (i = 0, m = conf->mailboxes; i < n; i++, m++)
		if (u[i].ok) {
			mb_sample(b, "m365relay_mailbox_messages", m->name,
			          ",stage=\"sent\"} %llu\n", (unsigned long long)u[i].out.msgs);
			mb_sample(b, "m365relay_mailbox_messages", m->name,
			          ",stage=\"admitted\"} %llu\n", (unsigned long long)u[i].adm.msgs);
		}
	family(b, "m365relay_mailbox_messages_limit", "gauge",
	       "The mailbox's message limit: messages per window_seconds.");
	for (i = 0, m = conf->mailboxes; i < n; i++, m++)
		if (u[i].ok)
			mb_sample(b, "m365relay_mailbox_messages_limit", m->name,
			          ",window_seconds=\"%lu\"} %lu\n", m->messages.window,
			          m->messages.count);
	family(b, "m365relay_mailbox_recipients", "gauge",
	       "Recipients in the mailbox's window (stage sent: by the transports; "
	       "admitted: by the milter).");
	for (i = 0, m = conf->mailboxes; i < n; i++, m++)
		if (u[i].ok) {
			mb_sample(b, "m365relay_mailbox_recipients", m->name,
			          ",stage=\"sent\"} %llu\n", (unsigned long long)u[i].out.rcpts);
			mb_sample(b, "m365relay_mailbox_recipients", m->name,
			          ",stage=\"admitted\"} %llu\n",
			          (unsigned long long)u[i].adm.rcpts);
		}
	family(b, "m365relay_mailbox_recipients_limit", "gauge",
	       "The mailbox's recipient limit: recipients per window_seconds.");
	for (i = 0, m = conf->mailboxes; i < n; i++, m++)
		if (u[i].ok)
			mb_sample(b, "m365relay_mailbox_recipients_limit", m->name,
			          ",window_seconds=\"%lu\"} %lu\n", m->recipients.window,
			          m->recipients.count);
	family(b, "m365relay_mailbox_sessions", "gauge",
	       "SMTP sessions to Microsoft 365 the transports hold for the mailbox.");
	for (i = 0, m = conf->mailboxes; i < n; i++, m++)
		if (u[i].ok)
			mb_sample(b, "m365relay_mailbox_sessions", m->name, "} %llu\n",
			          (unsigned long long)u[i].out.sessions);
	family(b, "m365relay_mailbox_sessions_limit", "gauge",
	       "The most SMTP sessions the mailbox may hold at once.");
	for (i = 0, m = conf->mailboxes; i < n; i++, m++)
		if (u[i].ok)
			mb_sample(b, "m365relay_mailbox_sessions_limit", m->name, "} %u\n",
			          m->sessions);
	family(b, "m365relay_mailbox_next_message_seconds", "gauge",
	       "Seconds until the mailbox's message window lets the transports send "
	       "again (0: now).");
	for (i = 0, m = conf->mailboxes; i < n; i++, m++)
		if (u[i].ok)
			mb_sample(b, "m365relay_mailbox_next_message_seconds", m->name, "} %.3f\n",
			          u[i].out.msg_free_at > now
			              ? (double)(u[i].out.msg_free_at - now) / 1000
			              : 0.0);
}

/*
 * metrics_render - the Prometheus text page: every family's HELP and TYPE,
 * then all of its samples (the exposition format wants a family in one
 * piece).  b->failed tells the caller the page is not whole.
 */
void
metrics_render(struct sbuf *b)
{
	static const char *vnames[] = {"accept", "reject", "tempfail"};
	struct snapshot *snap = snap_get();
	struct store_err e;
	struct store *st;
	struct mb_usage *u;
	uint64_t now = store_now();
	size_t v, i;

	family(b, "m365relay_verdicts_total", "counter", "Messages by verdict and reason.");
	pthread_mutex_lock(&count_lock);
	for (v = 0; v < 3; v++)
		for (i = 0; i < REASON_COUNT; i++)
			if (counts[v][i] > 0 || (v == 0 && i == REASON_OK))
				sbuf_addf(
				    b,
				    "m365relay_verdicts_total{verdict=\"%s\",reason=\"%s\"} %lu\n",
				    vnames[v], reason_name((enum reason)i), counts[v][i]);
	pthread_mutex_unlock(&count_lock);
	pthread_mutex_lock(&health_lock);
	family(b, "m365relay_store_errors_total", "counter", "State store operations that failed.");
	sbuf_addf(b, "m365relay_store_errors_total %lu\n", store_errors);
	family(b, "m365relay_store_up", "gauge", "Whether the last state store operation worked.");
	sbuf_addf(b, "m365relay_store_up %d\n", store_failing ? 0 : 1);
	pthread_mutex_unlock(&health_lock);
	if (snap == NULL)
		return;
	st = with_store(snap->conf, &e);
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
		done_store();
		if (u != NULL)
			mailbox_families(b, snap->conf, u, now);
		free(u);
	}
	snap_put(snap);
}
