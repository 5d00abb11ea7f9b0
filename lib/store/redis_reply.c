/*
 * redis_reply.c - check the shape of Redis replies (see redis_reply.h).
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "redis_reply.h"
#include "util/util.h"

static redisReplyObjectFunctions *orig_fn; /* hiredis's own (one table, static) */
static redisReplyObjectFunctions limited;

static void *
limited_string(const redisReadTask *t, char *s, size_t len)
{
	return len > RR_STRING_MAX ? NULL : orig_fn->createString(t, s, len);
}

static void *
limited_array(const redisReadTask *t, int elements)
{
	return elements < 0 || elements > RR_ARRAY_MAX ? NULL : orig_fn->createArray(t, elements);
}

void
rr_limit_reader(redisReader *r)
{
	if (r == NULL || r->fn == NULL || r->fn == &limited)
		return;
	if (orig_fn == NULL) {
		/* The same default table for every reader: take it once. */
		orig_fn = r->fn;
		limited = *r->fn;
		limited.createString = limited_string;
		limited.createArray = limited_array;
	}
	if (r->fn == orig_fn)
		r->fn = &limited;
}

/* number - a string reply (or integer) holding a whole unsigned number */
static int
number(const redisReply *e, uint64_t *v)
{
	char buf[32], *end;
	unsigned long long x;

	if (e == NULL)
		return -1;
	if (e->type == REDIS_REPLY_INTEGER) {
		if (e->integer < 0)
			return -1;
		*v = (uint64_t)e->integer;
		return 0;
	}
	if (e->type != REDIS_REPLY_STRING || e->str == NULL || e->len == 0 || e->len >= sizeof(buf))
		return -1;
	memcpy(buf, e->str, e->len);
	buf[e->len] = '\0';
	if (buf[0] < '0' || buf[0] > '9')
		return -1;
	errno = 0;
	x = strtoull(buf, &end, 10);
	if (errno != 0 || *end != '\0')
		return -1;
	*v = x;
	return 0;
}

/* string - a string reply, NUL-free, as a C string (in the reply) */
static const char *
string(const redisReply *e)
{
	if (e == NULL || e->type != REDIS_REPLY_STRING || e->str == NULL ||
	    memchr(e->str, '\0', e->len) != NULL)
		return NULL;
	return e->str;
}

/* pairs - an array of an even number of elements (HGETALL, WITHSCORES) */
static bool
pairs(const redisReply *r)
{
	return r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements % 2 == 0 &&
	       (r->elements == 0 || r->element != NULL);
}

int
rr_pair(const redisReply *r, uint64_t *t)
{
	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element == NULL ||
	    r->element[0] == NULL || r->element[0]->type != REDIS_REPLY_INTEGER ||
	    r->element[1] == NULL || r->element[1]->type != REDIS_REPLY_INTEGER ||
	    (r->element[0]->integer != 0 && r->element[0]->integer != 1))
		return RR_BAD;
	*t = r->element[1]->integer < 0 ? UINT64_MAX : (uint64_t)r->element[1]->integer;
	return r->element[0]->integer ? STORE_OK : STORE_FULL;
}

int
rr_flag(const redisReply *r)
{
	if (r == NULL || r->type != REDIS_REPLY_INTEGER || (r->integer != 0 && r->integer != 1))
		return RR_BAD;
	return r->integer ? STORE_OK : STORE_FULL;
}

int
rr_stamps(const redisReply *r, uint64_t *out, size_t cap, size_t *n)
{
	size_t i;

	*n = 0;
	if (!pairs(r))
		return RR_BAD;
	for (i = 0; i + 1 < r->elements; i += 2) {
		uint64_t v;
		if (string(r->element[i]) == NULL || number(r->element[i + 1], &v) < 0)
			return RR_BAD;
		if (*n < cap)
			out[(*n)++] = v;
	}
	return 0;
}

int
rr_buckets(const redisReply *r, struct bucket *out, size_t cap, size_t *n)
{
	size_t i, j;

	*n = 0;
	if (!pairs(r))
		return RR_BAD;
	for (i = 0; i + 1 < r->elements; i += 2) {
		uint64_t start, count;
		if (number(r->element[i], &start) < 0 || number(r->element[i + 1], &count) < 0)
			return RR_BAD;
		if (*n < cap) {
			out[*n].start = start;
			out[(*n)++].count = count;
		}
	}
	/* Oldest first, as win_rcpt_sum expects. */
	for (i = 1; i < *n; i++) {
		struct bucket x = out[i];
		for (j = i; j > 0 && out[j - 1].start > x.start; j--)
			out[j] = out[j - 1];
		out[j] = x;
	}
	return 0;
}

bool
rr_holder_dead(const char *id, const char *since, uint64_t now)
{
	struct holder h, me;
	unsigned long long boot, start, t;
	unsigned pid;
	char *end;

	if (sscanf(id, "%llx:%u:%llu", &boot, &pid, &start) != 3)
		return true;
	memset(&h, 0, sizeof(h));
	h.boot = boot;
	h.pid = pid;
	h.start = start;
	store_self(&me, now);
	if (h.boot == me.boot)
		return !store_alive(&h); /* one of this machine's processes */
	errno = 0;
	t = strtoull(since, &end, 10);
	if (errno != 0 || *end != '\0' || end == since)
		return true; /* a lease we cannot read is no lease */
	return t + SLOT_LEASE_MS < now;
}

int
rr_dead_holders(const redisReply *r, const char *mine, uint64_t now, char dead[][HOLDER_ID_MAX],
                size_t cap, size_t *n)
{
	size_t i;

	*n = 0;
	if (!pairs(r))
		return RR_BAD;
	for (i = 0; i + 1 < r->elements; i += 2) {
		const char *id = string(r->element[i]), *since = string(r->element[i + 1]);
		if (id == NULL || since == NULL || strlen(id) >= HOLDER_ID_MAX)
			return RR_BAD;
		if (strcmp(id, mine) != 0 && rr_holder_dead(id, since, now) && *n < cap)
			m3_strlcpy(dead[(*n)++], id, HOLDER_ID_MAX);
	}
	return 0;
}

int
rr_live_holders(const redisReply *r, uint64_t now, uint64_t *n)
{
	size_t i;

	*n = 0;
	if (!pairs(r))
		return RR_BAD;
	for (i = 0; i + 1 < r->elements; i += 2) {
		const char *id = string(r->element[i]), *since = string(r->element[i + 1]);
		if (id == NULL || since == NULL)
			return RR_BAD;
		if (!rr_holder_dead(id, since, now))
			(*n)++;
	}
	return 0;
}

int
rr_journal(const redisReply *r, enum journal_state *state, char *reply, size_t size)
{
	const char *v, *bar;

	*state = JOURNAL_NONE;
	if (size > 0)
		reply[0] = '\0';
	if (r != NULL && r->type == REDIS_REPLY_NIL)
		return 0;
	v = string(r);
	/* "S|TIME|REPLY", S one of the states we write */
	if (v == NULL || r->len < 3 || v[1] != '|' ||
	    (v[0] != '0' + JOURNAL_ACCEPTED && v[0] != '0' + JOURNAL_FAILED) ||
	    (bar = strchr(v + 2, '|')) == NULL)
		return RR_BAD;
	*state = (enum journal_state)(v[0] - '0');
	if (size > 0)
		m3_strlcpy(reply, bar + 1, size);
	return 0;
}
