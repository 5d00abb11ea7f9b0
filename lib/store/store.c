/*
 * store.c - the store front: key names, backend choice, process identity.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store_impl.h"
#include "util/util.h"

int
store_fail(struct store_err *err, const char *fmt, ...)
{
	va_list ap;

	if (err != NULL) {
		err->code = STORE_EFAIL;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
	}
	return STORE_FAIL;
}

struct store *
store_open(const struct conf *conf, struct store_err *err)
{
	if (conf->store.backend == STORE_BACKEND_REDIS)
		return store_redis_open(conf, err);
	return store_lmdb_open(conf, err);
}

int
store_sync(struct store *s, struct store_err *err)
{
	return s->ops->sync != NULL ? s->ops->sync(s, err) : STORE_OK;
}

void
store_close(struct store *s)
{
	if (s != NULL)
		s->ops->close(s);
}

/* key - "KIND:NS:mailbox" with the mailbox in lower case */
static int
key(char *buf, size_t size, const char *kind, const char *ns, const char *mailbox)
{
	int n = ns ? snprintf(buf, size, "%s:%s:%s", kind, ns, mailbox)
	           : snprintf(buf, size, "%s:%s", kind, mailbox);
	if (n < 0 || (size_t)n >= size)
		return -1;
	m3_lower(buf);
	return 0;
}

#define KEY(buf, kind, ns, mb)                                                                     \
	if (key(buf, sizeof(buf), kind, ns, mb) < 0)                                               \
	return store_fail(err, "key too long for %s", mb)

int
store_msg_take(struct store *s, const char *ns, const char *mailbox, uint64_t count,
               uint64_t window_ms, uint64_t now, uint64_t *free_at, struct store_err *err)
{
	return store_msg_hold(s, ns, mailbox, count, window_ms, now, 0, free_at, err);
}

int
store_msg_hold(struct store *s, const char *ns, const char *mailbox, uint64_t count,
               uint64_t window_ms, uint64_t now, uint64_t hold_ms, uint64_t *free_at,
               struct store_err *err)
{
	char k[512];

	KEY(k, "msg", ns, mailbox);
	return s->ops->msg_take(s, k, count, window_ms, now, hold_ms, free_at, err);
}

int
store_msg_retime(struct store *s, const char *ns, const char *mailbox, uint64_t count,
                 uint64_t old_stamp, uint64_t new_stamp, struct store_err *err)
{
	char k[512];

	KEY(k, "msg", ns, mailbox);
	return s->ops->msg_retime(s, k, count, old_stamp, new_stamp, err);
}

int
store_rcpt_take(struct store *s, const char *ns, const char *mailbox, const struct limit *l,
                uint64_t n, uint64_t now, uint64_t *free_at, struct store_err *err)
{
	return store_rcpt_hold(s, ns, mailbox, l, n, now, 0, free_at, err);
}

int
store_rcpt_hold(struct store *s, const char *ns, const char *mailbox, const struct limit *l,
                uint64_t n, uint64_t now, uint64_t hold_ms, uint64_t *free_at,
                struct store_err *err)
{
	char k[512];

	KEY(k, "rcpt", ns, mailbox);
	return s->ops->rcpt_take(s, k, l, n, now, hold_ms, free_at, err);
}

int
store_rcpt_retime(struct store *s, const char *ns, const char *mailbox, const struct limit *l,
                  uint64_t n, uint64_t old_stamp, uint64_t new_stamp, struct store_err *err)
{
	char k[512];

	KEY(k, "rcpt", ns, mailbox);
	return s->ops->rcpt_retime(s, k, l, n, old_stamp, new_stamp, store_now(), err);
}

int
store_admit(struct store *s, const char *ns, const char *mailbox, const struct limit *rl,
            uint64_t k, uint64_t count, uint64_t window_ms, uint64_t now, uint64_t *free_at,
            bool *recipients_full, struct store_err *err)
{
	char rk[512], mk[512];
	int rc = STORE_OK;

	KEY(rk, "rcpt", ns, mailbox);
	KEY(mk, "msg", ns, mailbox);
	if (s->ops->admit != NULL)
		return s->ops->admit(s, rk, rl, k, mk, count, window_ms, now, free_at,
		                     recipients_full, err);
	*recipients_full = false;
	if (rl != NULL) {
		rc = s->ops->rcpt_take(s, rk, rl, k, now, 0, free_at, err);
		*recipients_full = rc == STORE_FULL;
	}
	if (rc == STORE_OK && count > 0)
		rc = s->ops->msg_take(s, mk, count, window_ms, now, 0, free_at, err);
	return rc;
}

int
store_slot_take(struct store *s, const char *mailbox, unsigned max, const struct holder *me,
                struct store_err *err)
{
	char k[512];

	KEY(k, "slot", NULL, mailbox);
	return s->ops->slot_take(s, k, max, me, err);
}

int
store_pause(struct store *s, const char *mailbox, uint64_t until, uint64_t now, uint64_t *current,
            struct store_err *err)
{
	char k[512];

	KEY(k, "pause", NULL, mailbox);
	*current = 0;
	return s->ops->pause(s, k, until, now, current, err);
}

int
store_slot_release(struct store *s, const char *mailbox, const struct holder *me,
                   struct store_err *err)
{
	char k[512];

	KEY(k, "slot", NULL, mailbox);
	return s->ops->slot_release(s, k, me, err);
}

int
store_usage(struct store *s, const char *ns, const struct mailbox_conf *m, uint64_t now,
            struct store_usage *u, struct store_err *err)
{
	char km[512], kr[512], ks[512];

	KEY(km, "msg", ns, m->name);
	KEY(kr, "rcpt", ns, m->name);
	KEY(ks, "slot", NULL, m->name);
	memset(u, 0, sizeof(*u));
	return s->ops->usage(s, km, kr, ks, m, now, u, err);
}

int
store_journal_get(struct store *s, const char *qid, const char *rcpt, enum journal_state *state,
                  char *reply, size_t size, struct store_err *err)
{
	return s->ops->journal_get(s, qid, rcpt, state, reply, size, err);
}

int
store_journal_put(struct store *s, const char *qid, const char *rcpt, enum journal_state state,
                  const char *reply, uint64_t now, struct store_err *err)
{
	return s->ops->journal_put(s, qid, rcpt, state, reply, now, err);
}

int
store_journal_drop(struct store *s, const char *qid, struct store_err *err)
{
	struct journal_ref r = {qid, NULL};

	return s->ops->journal_drop(s, &r, 1, err);
}

int
store_journal_forget(struct store *s, const struct journal_ref *refs, size_t n,
                     struct store_err *err)
{
	return n == 0 ? STORE_OK : s->ops->journal_drop(s, refs, n, err);
}

/* Process identity --------------------------------------------------------- */

static uint64_t
fnv1a(const char *s)
{
	uint64_t h = 14695981039346656037ULL;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

static uint64_t
boot_hash(void)
{
	static uint64_t cached;
	char buf[64] = "";
	FILE *fp;

	if (cached != 0)
		return cached;
	fp = fopen("/proc/sys/kernel/random/boot_id", "r");
	if (fp != NULL) {
		if (fgets(buf, sizeof(buf), fp) == NULL)
			buf[0] = '\0';
		fclose(fp);
	}
	cached = fnv1a(buf) | 1;
	return cached;
}

/* start_time - field 22 of /proc/PID/stat (after the comm, which may hold spaces) */
static uint64_t
start_time(uint32_t pid)
{
	char path[64], buf[1024];
	const char *p;
	unsigned long long v = 0;
	FILE *fp;
	size_t n;
	int field;

	snprintf(path, sizeof(path), "/proc/%u/stat", pid);
	fp = fopen(path, "r");
	if (fp == NULL)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, fp);
	fclose(fp);
	buf[n] = '\0';
	p = strrchr(buf, ')');
	if (p == NULL)
		return 0;
	/* Each step moves to the space before the next field: 20 steps from
	 * ")" reach the one before field 22 (starttime). */
	for (field = 2; field < 22 && p != NULL; field++)
		p = strchr(p + 1, ' ');
	if (p == NULL || sscanf(p + 1, "%llu", &v) != 1)
		return 0;
	return v;
}

void
store_self(struct holder *me, uint64_t now)
{
	memset(me, 0, sizeof(*me));
	me->boot = boot_hash();
	me->pid = (uint32_t)getpid();
	me->start = start_time(me->pid);
	me->since = now;
}

bool
store_alive(const struct holder *h)
{
	if (h->boot != boot_hash())
		return false; /* taken before the last reboot */
	return start_time(h->pid) == h->start && h->start != 0;
}

uint64_t
store_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)((long long)ts.tv_sec + m3_clock_offset()) * 1000 +
	       (uint64_t)ts.tv_nsec / 1000000;
}
