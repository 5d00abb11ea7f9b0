/*
 * store_redis.c - the shared store: several gateways, one set of counters.
 *
 * Every update is one Lua script (EVALSHA, loaded once per connection), so
 * it is atomic on the server whatever the number of gateways.  The rules
 * are those of window.c:
 *   msg:NS:MAILBOX   sorted set, score = admission time (ms)
 *   rcpt:NS:MAILBOX  hash, field = bucket start, value = recipients
 *   slot:MAILBOX     hash, field = holder (boot:pid:start), value = since
 *   j:QID            hash, field = recipient, value = state|time|reply
 * Keys carry the configured prefix and expire when their window has
 * passed.  Times are the gateways' clocks: keep them in NTP sync.
 *
 * A slot held by a process of this machine is freed as soon as that
 * process is gone; one held on another gateway is trusted for SLOT_LEASE
 * (no process of ours lives that long in a session).
 *
 * Failures (server down, timeout) return STORE_FAIL; the next call
 * reconnects, so the store comes back by itself when the server does.
 * One connection, serialised by a mutex: the milter's threads share it.
 */
#include "config.h"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "redis_reply.h"
#include "store_impl.h"
#include "window.h"
#include "util/util.h"

#define REDIS_TIMEOUT_S 2

struct store_redis {
	struct store base;
	pthread_mutex_t lock;
	redisContext *c;
	char host[256];
	unsigned port, db;
	char password[256];
	char prefix[64];
	char sha_msg[41], sha_retime[41], sha_rcpt[41], sha_rcpt_retime[41], sha_slot[41],
	    sha_pause[41];
};

static const char LUA_MSG[] =
    /* KEYS[1] set; ARGV: count, window, now, member, hold, poll (window.h) */
    "local count, w, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "local hold, poll = tonumber(ARGV[5]), tonumber(ARGV[6])\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - w)\n"
    "local n = redis.call('ZCARD', KEYS[1])\n"
    "if n >= count then\n"
    "  local e = redis.call('ZRANGE', KEYS[1], n - count, n - count, 'WITHSCORES')\n"
    "  local s = tonumber(e[2])\n"
    "  if s > now then return {0, now + poll} end\n"
    "  return {0, s + w}\n"
    "end\n"
    "redis.call('ZADD', KEYS[1], now + hold, ARGV[4])\n"
    "local ttl = redis.call('PTTL', KEYS[1])\n"
    "if ttl < w + hold + 1000 then redis.call('PEXPIRE', KEYS[1], w + hold + 1000) end\n"
    "return {1, now + hold}\n";

static const char LUA_PAUSE[] =
    /* KEYS[1] string; ARGV: until, now: raise the pause, never lower it */
    "local u, now = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "local v = tonumber(redis.call('GET', KEYS[1]) or '0') or 0\n"
    "if v <= now then v = 0 end\n"
    "if u > v then\n"
    "  redis.call('SET', KEYS[1], ARGV[1], 'PX', u - now + 1000)\n"
    "  v = u\n"
    "end\n"
    "return {1, v}\n";

static const char LUA_RETIME[] =
    /* KEYS[1] set; ARGV: old, new */
    "local old, new = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "local m = redis.call('ZRANGEBYSCORE', KEYS[1], old, old, 'LIMIT', 0, 1)\n"
    "if #m == 0 then return 0 end\n"
    "redis.call('ZADD', KEYS[1], new, m[1])\n"
    "local ttl = redis.call('PTTL', KEYS[1])\n"
    "if ttl > 0 and new > old then redis.call('PEXPIRE', KEYS[1], ttl + (new - old)) end\n"
    "return 1\n";

static const char LUA_RCPT[] =
    /* KEYS[1] hash; ARGV: count, window, k, now, hold, poll */
    "local count, w, k, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), "
    "tonumber(ARGV[4])\n"
    "local hold, poll = tonumber(ARGV[5]), tonumber(ARGV[6])\n"
    "local width = math.max(1, math.floor(w / 96))\n"
    "local t = redis.call('HGETALL', KEYS[1])\n"
    "local live, sum = {}, 0\n"
    "for i = 1, #t, 2 do\n"
    "  local s, c = tonumber(t[i]), tonumber(t[i + 1])\n"
    "  if s + width + w > now then sum = sum + c; live[#live + 1] = {s, c}\n"
    "  else redis.call('HDEL', KEYS[1], t[i]) end\n"
    "end\n"
    "if k > count then return {0, -1} end\n"
    "if sum + k > count then\n"
    "  table.sort(live, function(a, b) return a[1] < b[1] end)\n"
    "  local free = now\n"
    "  for _, b in ipairs(live) do\n"
    "    if sum + k <= count then break end\n"
    "    sum = sum - b[2]\n"
    "    if b[1] > now then free = now + poll else free = b[1] + width + w end\n"
    "  end\n"
    "  return {0, free}\n"
    "end\n"
    "local at = now + hold\n"
    "redis.call('HINCRBY', KEYS[1], string.format('%d', at - (at % width)), k)\n"
    "local ttl = redis.call('PTTL', KEYS[1])\n"
    "if ttl < hold + w + width + 1000 then redis.call('PEXPIRE', KEYS[1], hold + w + width + 1000) "
    "end\n"
    "return {1, at}\n";

static const char LUA_RCPT_RETIME[] =
    /* KEYS[1] hash; ARGV: k, old, new, window, now (window.c's win_rcpt_retime) */
    "local k, old, new, w, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), "
    "tonumber(ARGV[4]), tonumber(ARGV[5])\n"
    "local width = math.max(1, math.floor(w / 96))\n"
    "local found, os = 0, old - (old % width)\n"
    "if os + width + w > now then\n"
    "  local f = string.format('%d', os)\n"
    "  local c = tonumber(redis.call('HGET', KEYS[1], f) or '0') or 0\n"
    "  if c > 0 then\n"
    "    found = 1\n"
    "    if c <= k then redis.call('HDEL', KEYS[1], f) else redis.call('HINCRBY', KEYS[1], f, -k) "
    "end\n"
    "  end\n"
    "end\n"
    "if new > 0 then\n"
    "  redis.call('HINCRBY', KEYS[1], string.format('%d', new - (new % width)), k)\n"
    "  local want = new - (new % width) + width + w - now + 1000\n"
    "  if redis.call('PTTL', KEYS[1]) < want then redis.call('PEXPIRE', KEYS[1], want) end\n"
    "end\n"
    "return found\n";

static const char LUA_SLOT[] =
    /* KEYS[1] hash; ARGV: max, me, since, dead... */
    "for i = 4, #ARGV do redis.call('HDEL', KEYS[1], ARGV[i]) end\n"
    "if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 1 then return 1 end\n"
    "if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end\n"
    "redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])\n"
    "redis.call('PEXPIRE', KEYS[1], "
    "1800000"
    ")\n"
    "return 1\n";

static void
disconnect(struct store_redis *s)
{
	if (s->c != NULL) {
		redisFree(s->c);
		s->c = NULL;
	}
}

static int
fail_reply(struct store_redis *s, redisReply *r, struct store_err *err, const char *what)
{
	if (r == NULL) {
		store_fail(err, "Redis %s:%u: %s: %s", s->host, s->port, what,
		           s->c && s->c->errstr[0] ? s->c->errstr : "no reply");
		disconnect(s); /* reconnect on the next call */
	} else {
		store_fail(err, "Redis %s: %s", what,
		           r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
		freeReplyObject(r);
	}
	return STORE_FAIL;
}

static int
load_script(struct store_redis *s, const char *src, char *sha, struct store_err *err)
{
	redisReply *r = redisCommand(s->c, "SCRIPT LOAD %s", src);

	if (r == NULL || r->type != REDIS_REPLY_STRING || r->len != 40)
		return fail_reply(s, r, err, "SCRIPT LOAD");
	memcpy(sha, r->str, 40);
	sha[40] = '\0';
	freeReplyObject(r);
	return STORE_OK;
}

/* ensure - a live connection with our scripts loaded */
static int
ensure(struct store_redis *s, struct store_err *err)
{
	struct timeval tv = {REDIS_TIMEOUT_S, 0};
	redisReply *r;

	if (s->c != NULL)
		return STORE_OK;
	if (s->host[0] == '/')
		s->c = redisConnectUnixWithTimeout(s->host, tv);
	else
		s->c = redisConnectWithTimeout(s->host, (int)s->port, tv);
	if (s->c == NULL || s->c->err) {
		store_fail(err, "Redis %s:%u: %s", s->host, s->port,
		           s->c ? s->c->errstr : "cannot allocate a connection");
		disconnect(s);
		return STORE_FAIL;
	}
	redisSetTimeout(s->c, tv);
	rr_limit_reader(s->c->reader);
	if (s->password[0] != '\0') {
		r = redisCommand(s->c, "AUTH %s", s->password);
		if (r == NULL || r->type == REDIS_REPLY_ERROR)
			return fail_reply(s, r, err, "AUTH");
		freeReplyObject(r);
	}
	if (s->db != 0) {
		r = redisCommand(s->c, "SELECT %u", s->db);
		if (r == NULL || r->type == REDIS_REPLY_ERROR)
			return fail_reply(s, r, err, "SELECT");
		freeReplyObject(r);
	}
	if (load_script(s, LUA_MSG, s->sha_msg, err) < 0 ||
	    load_script(s, LUA_RETIME, s->sha_retime, err) < 0 ||
	    load_script(s, LUA_RCPT, s->sha_rcpt, err) < 0 ||
	    load_script(s, LUA_RCPT_RETIME, s->sha_rcpt_retime, err) < 0 ||
	    load_script(s, LUA_SLOT, s->sha_slot, err) < 0 ||
	    load_script(s, LUA_PAUSE, s->sha_pause, err) < 0)
		return STORE_FAIL;
	return STORE_OK;
}

/* send_argv - connected (or reconnected), the command's reply; NULL (err set) if none */
static redisReply *
send_argv(struct store_redis *s, int argc, const char **argv, struct store_err *err)
{
	redisReply *r;

	if (ensure(s, err) < 0)
		return NULL;
	r = redisCommandArgv(s->c, argc, argv, NULL);
	if (r == NULL)
		fail_reply(s, NULL, err, argv[0]);
	return r;
}

/* call - run a command with argv, under the lock, reconnecting if needed */
static redisReply *
call(struct store_redis *s, int argc, const char **argv, struct store_err *err)
{
	redisReply *r = send_argv(s, argc, argv, err);

	if (r != NULL && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
		/* The server restarted and lost our scripts: load them again. */
		freeReplyObject(r);
		disconnect(s);
		r = send_argv(s, argc, argv, err);
	}
	if (r == NULL)
		return NULL;
	if (r->type == REDIS_REPLY_ERROR) {
		fail_reply(s, r, err, argv[0]);
		return NULL;
	}
	return r;
}

static void
pkey(struct store_redis *s, const char *key, char *buf, size_t size)
{
	snprintf(buf, size, "%s%s", s->prefix, key);
}

/* checked - what a checker made of a reply; the reply is freed */
/* locked_call - call() under the connection's lock */
static redisReply *
locked_call(struct store_redis *s, int argc, const char **argv, struct store_err *err)
{
	redisReply *r;

	pthread_mutex_lock(&s->lock);
	r = call(s, argc, argv, err);
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* done - a reply whose content does not matter: STORE_OK if there was one */
static int
done(redisReply *r)
{
	if (r == NULL)
		return STORE_FAIL;
	freeReplyObject(r);
	return STORE_OK;
}

static int
checked(redisReply *r, int rc, const char *what, struct store_err *err)
{
	freeReplyObject(r);
	if (rc == RR_BAD)
		return store_fail(err, "Redis: a reply of an unexpected shape to %s", what);
	return rc;
}

/* A two-element integer array reply {ok, time}. */
static int
pair(redisReply *r, uint64_t *t, struct store_err *err)
{
	return checked(r, rr_pair(r, t), "a script", err);
}

static int
rd_msg_take(struct store *st, const char *key, uint64_t count, uint64_t window_ms, uint64_t now,
            uint64_t hold_ms, uint64_t *free_at, struct store_err *err)
{
	struct store_redis *s = (struct store_redis *)st;
	char k[600], a1[24], a2[24], a3[24], member[96], a5[24], a6[24];
	static unsigned long seq;
	const char *argv[] = {"EVALSHA", NULL, "1", k, a1, a2, a3, member, a5, a6};
	redisReply *r;
	int rc;

	pkey(s, key, k, sizeof(k));
	snprintf(a1, sizeof(a1), "%llu", (unsigned long long)count);
	snprintf(a2, sizeof(a2), "%llu", (unsigned long long)window_ms);
	snprintf(a3, sizeof(a3), "%llu", (unsigned long long)now);
	snprintf(a5, sizeof(a5), "%llu", (unsigned long long)hold_ms);
	snprintf(a6, sizeof(a6), "%u", (unsigned)WIN_POLL_MS);
	pthread_mutex_lock(&s->lock);
	snprintf(member, sizeof(member), "%llu:%ld:%lu", (unsigned long long)now, (long)getpid(),
	         ++seq);
	argv[1] = s->sha_msg;
	r = call(s, 10, argv, err);
	pthread_mutex_unlock(&s->lock);
	if (r == NULL)
		return STORE_FAIL;
	rc = pair(r, free_at, err);
	return rc;
}

static int
rd_msg_retime(struct store *st, const char *key, uint64_t count, uint64_t old_stamp,
              uint64_t new_stamp, struct store_err *err)
{
	struct store_redis *s = (struct store_redis *)st;
	char k[600], a1[24], a2[24];
	const char *argv[] = {"EVALSHA", NULL, "1", k, a1, a2};

	(void)count;
	pkey(s, key, k, sizeof(k));
	snprintf(a1, sizeof(a1), "%llu", (unsigned long long)old_stamp);
	snprintf(a2, sizeof(a2), "%llu", (unsigned long long)new_stamp);
	argv[1] = s->sha_retime;
	return done(locked_call(s, 6, argv, err));
}

static int
rd_rcpt_take(struct store *st, const char *key, const struct limit *l, uint64_t k, uint64_t now,
             uint64_t hold_ms, uint64_t *free_at, struct store_err *err)
{
	struct store_redis *s = (struct store_redis *)st;
	char kk[600], a1[24], a2[24], a3[24], a4[24], a5[24], a6[24];
	const char *argv[] = {"EVALSHA", NULL, "1", kk, a1, a2, a3, a4, a5, a6};
	redisReply *r;

	pkey(s, key, kk, sizeof(kk));
	snprintf(a1, sizeof(a1), "%lu", l->count);
	snprintf(a2, sizeof(a2), "%llu", (unsigned long long)l->window * 1000);
	snprintf(a3, sizeof(a3), "%llu", (unsigned long long)k);
	snprintf(a4, sizeof(a4), "%llu", (unsigned long long)now);
	snprintf(a5, sizeof(a5), "%llu", (unsigned long long)hold_ms);
	snprintf(a6, sizeof(a6), "%u", (unsigned)WIN_POLL_MS);
	argv[1] = s->sha_rcpt;
	r = locked_call(s, 10, argv, err);
	if (r == NULL)
		return STORE_FAIL;
	return pair(r, free_at, err);
}

static int
rd_rcpt_retime(struct store *st, const char *key, const struct limit *l, uint64_t k,
               uint64_t old_stamp, uint64_t new_stamp, uint64_t now, struct store_err *err)
{
	struct store_redis *s = (struct store_redis *)st;
	char kk[600], a1[24], a2[24], a3[24], a4[24], a5[24];
	const char *argv[] = {"EVALSHA", NULL, "1", kk, a1, a2, a3, a4, a5};

	pkey(s, key, kk, sizeof(kk));
	snprintf(a1, sizeof(a1), "%llu", (unsigned long long)k);
	snprintf(a2, sizeof(a2), "%llu", (unsigned long long)old_stamp);
	snprintf(a3, sizeof(a3), "%llu", (unsigned long long)new_stamp);
	snprintf(a4, sizeof(a4), "%llu", (unsigned long long)l->window * 1000);
	snprintf(a5, sizeof(a5), "%llu", (unsigned long long)now);
	argv[1] = s->sha_rcpt_retime;
	return done(locked_call(s, 9, argv, err));
}

static void
holder_id(const struct holder *h, char *buf, size_t size)
{
	snprintf(buf, size, "%016llx:%u:%llu", (unsigned long long)h->boot, h->pid,
	         (unsigned long long)h->start);
}

static int
rd_slot_take(struct store *st, const char *key, unsigned max, const struct holder *me,
             struct store_err *err)
{
	struct store_redis *s = (struct store_redis *)st;
	char k[600], maxs[16], mine[HOLDER_ID_MAX], since[24], dead[64][HOLDER_ID_MAX];
	const char *argv[4 + 64 + 3];
	const char *hget[] = {"HGETALL", k};
	redisReply *r;
	uint64_t now = store_now();
	size_t i, nd = 0;
	int argc;

	pkey(s, key, k, sizeof(k));
	holder_id(me, mine, sizeof(mine));
	pthread_mutex_lock(&s->lock);
	r = call(s, 2, hget, err);
	if (r == NULL) {
		pthread_mutex_unlock(&s->lock);
		return STORE_FAIL;
	}
	if (checked(r, rr_dead_holders(r, mine, now, dead, NELEM(dead), &nd), "HGETALL", err) < 0) {
		pthread_mutex_unlock(&s->lock);
		return STORE_FAIL;
	}
	snprintf(maxs, sizeof(maxs), "%u", max);
	snprintf(since, sizeof(since), "%llu", (unsigned long long)now);
	argv[0] = "EVALSHA";
	argv[1] = s->sha_slot;
	argv[2] = "1";
	argv[3] = k;
	argv[4] = maxs;
	argv[5] = mine;
	argv[6] = since;
	argc = 7;
	for (i = 0; i < nd; i++)
		argv[argc++] = dead[i];
	r = call(s, argc, argv, err);
	pthread_mutex_unlock(&s->lock);
	if (r == NULL)
		return STORE_FAIL;
	return checked(r, rr_flag(r), "the slot script", err);
}

static int
rd_slot_release(struct store *st, const char *key, const struct holder *me, struct store_err *err)
{
	struct store_redis *s = (struct store_redis *)st;
	char k[600], mine[64];
	const char *argv[] = {"HDEL", k, mine};

	pkey(s, key, k, sizeof(k));
	holder_id(me, mine, sizeof(mine));
	return done(locked_call(s, 3, argv, err));
}

static int
rd_pause(struct store *st, const char *key, uint64_t until, uint64_t now, uint64_t *current,
         struct store_err *err)
{
	struct store_redis *s = (struct store_redis *)st;
	char k[600], a1[24], a2[24];
	const char *argv[] = {"EVALSHA", NULL, "1", k, a1, a2};
	redisReply *r;

	pkey(s, key, k, sizeof(k));
	snprintf(a1, sizeof(a1), "%llu", (unsigned long long)until);
	snprintf(a2, sizeof(a2), "%llu", (unsigned long long)now);
	pthread_mutex_lock(&s->lock);
	argv[1] = s->sha_pause;
	r = call(s, 6, argv, err);
	pthread_mutex_unlock(&s->lock);
	if (r == NULL)
		return STORE_FAIL;
	return pair(r, current, err);
}

static int
rd_usage(struct store *st, const char *km, const char *kr, const char *ks,
         const struct mailbox_conf *m, uint64_t now, struct store_usage *u, struct store_err *err)
{
	struct store_redis *s = (struct store_redis *)st;
	char k1[600], k2[600], k3[600], lo[32];
	const char *zr[] = {"ZRANGEBYSCORE", k1, lo, "+inf", "WITHSCORES"};
	const char *hg[] = {"HGETALL", k2};
	const char *hs[] = {"HGETALL", k3};
	uint64_t *stamps = NULL, wms = m->messages.window * 1000;
	struct bucket b[WINDOW_BUCKETS + 8];
	redisReply *r;
	size_t n = 0, cap;
	uint64_t live;
	int rc = STORE_FAIL;

	pkey(s, km, k1, sizeof(k1));
	pkey(s, kr, k2, sizeof(k2));
	pkey(s, ks, k3, sizeof(k3));
	snprintf(lo, sizeof(lo), "(%llu", (unsigned long long)(now > wms ? now - wms : 0));
	pthread_mutex_lock(&s->lock);
	r = call(s, 5, zr, err);
	if (r == NULL)
		goto out;
	cap = r->type == REDIS_REPLY_ARRAY ? r->elements / 2 + 1 : 1;
	stamps = calloc(cap, sizeof(*stamps));
	if (stamps == NULL) {
		freeReplyObject(r);
		store_fail(err, "out of memory");
		goto out;
	}
	if (checked(r, rr_stamps(r, stamps, cap, &n), "ZRANGEBYSCORE", err) < 0)
		goto out;
	u->msgs = win_msg_count(stamps, n, m->messages.count, wms, now, &u->msg_free_at);
	r = call(s, 2, hg, err);
	if (r == NULL)
		goto out;
	if (checked(r, rr_buckets(r, b, NELEM(b), &n), "HGETALL", err) < 0)
		goto out;
	u->rcpts = win_rcpt_sum(b, n, m->recipients.count, m->recipients.window * 1000, now,
	                        &u->rcpt_free_at);
	r = call(s, 2, hs, err);
	if (r == NULL)
		goto out;
	if (checked(r, rr_live_holders(r, now, &live), "HGETALL", err) < 0)
		goto out;
	u->sessions = live;
	rc = STORE_OK;
out:
	pthread_mutex_unlock(&s->lock);
	free(stamps);
	return rc;
}

static int
rd_journal_get(struct store *st, const char *qid, const char *rcpt, enum journal_state *state,
               char *reply, size_t size, struct store_err *err)
{
	struct store_redis *s = (struct store_redis *)st;
	char k[600];
	const char *argv[] = {"HGET", k, rcpt};
	redisReply *r;

	*state = JOURNAL_NONE;
	if (size > 0)
		reply[0] = '\0';
	snprintf(k, sizeof(k), "%sj:%s", s->prefix, qid);
	r = locked_call(s, 3, argv, err);
	if (r == NULL)
		return STORE_FAIL;
	return checked(r, rr_journal(r, state, reply, size), "HGET", err);
}

static int
rd_journal_put(struct store *st, const char *qid, const char *rcpt, enum journal_state state,
               const char *reply, uint64_t now, struct store_err *err)
{
	struct store_redis *s = (struct store_redis *)st;
	char k[600], v[64 + JOURNAL_REPLY_MAX], ttl[24];
	const char *set[] = {"HSET", k, rcpt, v};
	const char *exp[] = {"PEXPIRE", k, ttl};
	redisReply *r;

	snprintf(k, sizeof(k), "%sj:%s", s->prefix, qid);
	snprintf(v, sizeof(v), "%d|%llu|%.*s", (int)state, (unsigned long long)now,
	         JOURNAL_REPLY_MAX, reply ? reply : "");
	snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)JOURNAL_TTL_MS);
	pthread_mutex_lock(&s->lock);
	r = call(s, 4, set, err);
	if (r != NULL) {
		freeReplyObject(r);
		r = call(s, 3, exp, err);
	}
	pthread_mutex_unlock(&s->lock);
	if (r == NULL)
		return STORE_FAIL;
	freeReplyObject(r);
	return STORE_OK;
}

static int
rd_journal_drop(struct store *st, const struct journal_ref *refs, size_t n, struct store_err *err)
{
	struct store_redis *s = (struct store_redis *)st;
	enum { MAX = 64 };
	char k[600];
	const char *argv[2 + MAX];
	size_t i = 0, m;

	/* One command per queue file: DEL of its hash, or HDEL of its
	 * recipients (consecutive refs of one queue file together). */
	while (i < n) {
		snprintf(k, sizeof(k), "%sj:%s", s->prefix, refs[i].qid);
		if (refs[i].rcpt == NULL) {
			argv[0] = "DEL";
			argv[1] = k;
			if (done(locked_call(s, 2, argv, err)) != STORE_OK)
				return STORE_FAIL;
			i++;
			continue;
		}
		argv[0] = "HDEL";
		argv[1] = k;
		for (m = 0; i < n && m < MAX && refs[i].rcpt != NULL &&
		            strcmp(refs[i].qid, refs[i - m].qid) == 0;
		     m++, i++)
			argv[2 + m] = refs[i].rcpt;
		if (done(locked_call(s, (int)(2 + m), argv, err)) != STORE_OK)
			return STORE_FAIL;
	}
	return STORE_OK;
}

static void
rd_close(struct store *st)
{
	struct store_redis *s = (struct store_redis *)st;

	disconnect(s);
	pthread_mutex_destroy(&s->lock);
	memset(s->password, 0, sizeof(s->password));
	free(s);
}

static const struct store_ops redis_ops = {
    .name = "redis",
    .msg_take = rd_msg_take,
    .msg_retime = rd_msg_retime,
    .rcpt_take = rd_rcpt_take,
    .rcpt_retime = rd_rcpt_retime,
    .slot_take = rd_slot_take,
    .slot_release = rd_slot_release,
    .pause = rd_pause,
    .usage = rd_usage,
    .journal_get = rd_journal_get,
    .journal_put = rd_journal_put,
    .journal_drop = rd_journal_drop,
    .close = rd_close,
};

struct store *
store_redis_open(const struct conf *conf, struct store_err *err)
{
	const struct store_conf *sc = &conf->store;
	struct store_redis *s = calloc(1, sizeof(*s));

	if (s == NULL) {
		store_fail(err, "out of memory");
		return NULL;
	}
	s->base.ops = &redis_ops;
	pthread_mutex_init(&s->lock, NULL);
	m3_strlcpy(s->host, sc->redis_host ? sc->redis_host : "127.0.0.1", sizeof(s->host));
	s->port = sc->redis_port;
	s->db = sc->redis_db;
	m3_strlcpy(s->prefix, sc->prefix ? sc->prefix : "", sizeof(s->prefix));
	if (sc->redis_password_file != NULL) {
		FILE *fp = fopen(sc->redis_password_file, "r");
		if (fp == NULL || fgets(s->password, sizeof(s->password), fp) == NULL) {
			store_fail(err, "redis_password_file %s: cannot read",
			           sc->redis_password_file);
			if (fp != NULL)
				fclose(fp);
			free(s);
			return NULL;
		}
		fclose(fp);
		s->password[strcspn(s->password, "\r\n")] = '\0';
	}
	/*
	 * Not connecting yet: a server that is down now must not stop the
	 * milter from starting; the first operation connects (or fails, and
	 * takes on_error), and later ones retry.
	 */
	return &s->base;
}
