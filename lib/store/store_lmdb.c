/*
 * store_lmdb.c - the embedded store: two LMDB files under state_dir.
 *
 * Every update is one write transaction (read the array, apply window.c's
 * rule, write it back), and LMDB serialises write transactions across
 * processes with a robust mutex, so a process killed mid-update neither
 * corrupts the file nor blocks the others.  Reads (status) do not block
 * writers.  The map size bounds each file; a full map is a store failure
 * like any other (the milter's on_error decides), never a crash.
 *
 * What a crash costs, by kind of record (the sync policy):
 * - Counters (message and recipient windows, session slots, pauses), in
 *   store { path }: written through the shared map without a sync
 *   (MDB_WRITEMAP | MDB_NOSYNC; the file's blocks are reserved at open, so
 *   a full disk is an error there and not a SIGBUS later).  A commit is in
 *   the kernel when it returns, so a process that dies loses nothing; the
 *   disk catches up within a second (store_sync(), which the milter calls
 *   every second and every process calls when it closes the store) or at
 *   the kernel's writeback.  A machine that crashes may lose the last
 *   second of counts, and may leave the file torn (LMDB without a sync
 *   only keeps its order if the file system keeps write order).  So the
 *   first process to open the counters after a reboot reads the whole file
 *   (boot_check); a file LMDB cannot read whole is moved aside and the
 *   counters start again, which is logged.  The admission the milter asks
 *   per message costs a few microseconds instead of a disk flush (issue
 *   17: p50 555 us, p99 1,261 us with the flush; bench/delivery measures
 *   it).  The price of the writable map: a wild write elsewhere in a
 *   process could reach the counters; they are the only thing mapped so.
 * - The journal (what each recipient of a queue file got), in store {
 *   journal_path }: every put is durable when it returns (its data
 *   flushed in the commit, its meta page right after, outside the writer
 *   lock: lm_journal_put).  The journal is what keeps a
 *   retry from sending again; a delivery writes it once per recipient,
 *   after Microsoft's reply, so a flush there costs little next to the
 *   SMTP dialogue.  A crash between Microsoft's reply and that write sends
 *   the message again on the retry, as in any SMTP client.  Dropping a
 *   finished queue id is the exception: not durable (lm_journal_drop).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store_impl.h"
#include "util/log.h"
#include "util/util.h"

struct store_lmdb {
	struct store base;
	MDB_env *env; /* counters: MDB_NOSYNC */
	MDB_dbi dbi;
	MDB_env *jenv; /* the journal: MDB_NOMETASYNC, a put flushed whole */
	MDB_dbi jdbi;
};

/* Bounds on what one key may hold (Exchange Online's limits are far lower). */
#define MAX_STAMPS  100000
#define MAX_BUCKETS (WINDOW_BUCKETS + 8)
#define MAX_HOLDERS 64

static int
lmdb_fail(struct store_err *err, const char *what, int rc)
{
	store_fail(err, "LMDB %s: %s%s", what, mdb_strerror(rc),
	           rc == MDB_MAP_FULL ? " (store full: raise store { size })" : "");
	if (err != NULL && rc == MDB_MAP_FULL)
		err->code = STORE_EMAPFULL;
	return STORE_FAIL;
}

/* Read-modify-write of one key's array, within the caller's write
 * transaction: fn's answer (STORE_OK, STORE_FULL), or STORE_FAIL with *lrc. */
typedef int (*apply_fn)(void *arr, size_t *n, void *ctx);

static int
rmw_in(struct store_lmdb *s, MDB_txn *txn, const char *key, size_t elsize, size_t cap, apply_fn fn,
       void *ctx, int *lrc)
{
	MDB_val k = {strlen(key), (void *)key}, v;
	void *arr;
	size_t n = 0;
	int rc, result;

	arr = calloc(cap, elsize);
	if (arr == NULL) {
		*lrc = ENOMEM;
		return STORE_FAIL;
	}
	rc = mdb_get(txn, s->dbi, &k, &v);
	if (rc == 0 && v.mv_size % elsize == 0) {
		/* Keep the newest cap entries: a lowered limit keeps its history. */
		size_t have = v.mv_size / elsize;
		n = have > cap ? cap : have;
		memcpy(arr, (char *)v.mv_data + (have - n) * elsize, n * elsize);
	} else if (rc == 0) {
		n = 0; /* a malformed value is dropped, not trusted */
	} else if (rc != MDB_NOTFOUND) {
		free(arr);
		*lrc = rc;
		return STORE_FAIL;
	}
	result = fn(arr, &n, ctx);
	v.mv_size = n * elsize;
	v.mv_data = arr;
	rc = n > 0 ? mdb_put(txn, s->dbi, &k, &v, 0) : mdb_del(txn, s->dbi, &k, NULL);
	free(arr);
	if (rc != 0 && rc != MDB_NOTFOUND) {
		*lrc = rc;
		return STORE_FAIL;
	}
	return result;
}

/* finish - commit what rmw_in() did, or abort on its failure (lrc) */
static int
finish(MDB_txn *txn, int result, int lrc, struct store_err *err)
{
	int rc;

	if (result == STORE_FAIL) {
		mdb_txn_abort(txn);
		return lrc == ENOMEM ? store_fail(err, "out of memory")
		                     : lmdb_fail(err, "write", lrc);
	}
	rc = mdb_txn_commit(txn);
	if (rc != 0)
		return lmdb_fail(err, "write", rc);
	return result;
}

/* Read-modify-write of one key's array, in one write transaction. */
static int
rmw(struct store_lmdb *s, const char *key, size_t elsize, size_t cap, apply_fn fn, void *ctx,
    struct store_err *err)
{
	MDB_txn *txn;
	int rc, result;

	rc = mdb_txn_begin(s->env, NULL, 0, &txn);
	if (rc != 0)
		return lmdb_fail(err, "begin", rc);
	result = rmw_in(s, txn, key, elsize, cap, fn, ctx, &rc);
	return finish(txn, result, rc, err);
}

/* Read one key's array in a read transaction. */
static int
get_array(struct store_lmdb *s, MDB_txn *txn, const char *key, void *arr, size_t elsize, size_t cap,
          size_t *n, struct store_err *err)
{
	MDB_val k = {strlen(key), (void *)key}, v;
	int rc = mdb_get(txn, s->dbi, &k, &v);

	*n = 0;
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return lmdb_fail(err, "get", rc);
	if (v.mv_size % elsize != 0 || v.mv_size / elsize > cap)
		return 0;
	*n = v.mv_size / elsize;
	memcpy(arr, v.mv_data, v.mv_size);
	return 0;
}

/* Windows -------------------------------------------------------------------- */

struct msg_ctx {
	uint64_t count, window_ms, now, hold_ms, free_at;
};

static int
apply_msg(void *arr, size_t *n, void *c)
{
	struct msg_ctx *x = c;
	uint64_t cap = x->count < MAX_STAMPS ? x->count : MAX_STAMPS;

	return win_msg_take(arr, n, cap, x->count, x->window_ms, x->now, x->hold_ms, &x->free_at)
	           ? STORE_OK
	           : STORE_FULL;
}

static int
lm_msg_take(struct store *st, const char *key, uint64_t count, uint64_t window_ms, uint64_t now,
            uint64_t hold_ms, uint64_t *free_at, struct store_err *err)
{
	struct msg_ctx x = {count, window_ms, now, hold_ms, 0};
	size_t cap = count < MAX_STAMPS ? count : MAX_STAMPS;
	int rc = rmw((struct store_lmdb *)st, key, sizeof(uint64_t), cap, apply_msg, &x, err);

	*free_at = x.free_at;
	return rc;
}

struct retime_ctx {
	uint64_t old_stamp, new_stamp;
};

static int
apply_retime(void *arr, size_t *n, void *c)
{
	struct retime_ctx *x = c;

	win_msg_retime(arr, *n, x->old_stamp, x->new_stamp);
	return STORE_OK;
}

static int
lm_msg_retime(struct store *st, const char *key, uint64_t count, uint64_t old_stamp,
              uint64_t new_stamp, struct store_err *err)
{
	struct retime_ctx x = {old_stamp, new_stamp};
	size_t cap = count < MAX_STAMPS ? count : MAX_STAMPS;

	return rmw((struct store_lmdb *)st, key, sizeof(uint64_t), cap, apply_retime, &x, err);
}

struct rcpt_ctx {
	const struct limit *l;
	uint64_t k, now, hold_ms, free_at;
};

static int
apply_rcpt(void *arr, size_t *n, void *c)
{
	struct rcpt_ctx *x = c;

	return win_rcpt_take(arr, n, MAX_BUCKETS, x->l->count, x->l->window * 1000, x->k, x->now,
	                     x->hold_ms, &x->free_at)
	           ? STORE_OK
	           : STORE_FULL;
}

static int
lm_rcpt_take(struct store *st, const char *key, const struct limit *l, uint64_t k, uint64_t now,
             uint64_t hold_ms, uint64_t *free_at, struct store_err *err)
{
	struct rcpt_ctx x = {l, k, now, hold_ms, 0};
	int rc = rmw((struct store_lmdb *)st, key, sizeof(struct bucket), MAX_BUCKETS, apply_rcpt,
	             &x, err);

	*free_at = x.free_at;
	return rc;
}

struct rcpt_retime_ctx {
	const struct limit *l;
	uint64_t k, old_stamp, new_stamp, now;
};

static int
apply_rcpt_retime(void *arr, size_t *n, void *c)
{
	struct rcpt_retime_ctx *x = c;

	win_rcpt_retime(arr, n, MAX_BUCKETS, x->l->window * 1000, x->k, x->old_stamp, x->new_stamp,
	                x->now);
	return STORE_OK;
}

static int
lm_rcpt_retime(struct store *st, const char *key, const struct limit *l, uint64_t k,
               uint64_t old_stamp, uint64_t new_stamp, uint64_t now, struct store_err *err)
{
	struct rcpt_retime_ctx x = {l, k, old_stamp, new_stamp, now};

	return rmw((struct store_lmdb *)st, key, sizeof(struct bucket), MAX_BUCKETS,
	           apply_rcpt_retime, &x, err);
}

/* The milter's admission in one transaction: the recipients, then (if
 * they fit) the message - what store.c's two calls do, one commit. */
static int
lm_admit(struct store *st, const char *rkey, const struct limit *rl, uint64_t k, const char *mkey,
         uint64_t count, uint64_t window_ms, uint64_t now, uint64_t *free_at, bool *recipients_full,
         struct store_err *err)
{
	struct store_lmdb *s = (struct store_lmdb *)st;
	struct rcpt_ctx rx = {rl, k, now, 0, 0};
	struct msg_ctx mx = {count, window_ms, now, 0, 0};
	MDB_txn *txn;
	int rc, result = STORE_OK;

	*recipients_full = false;
	rc = mdb_txn_begin(s->env, NULL, 0, &txn);
	if (rc != 0)
		return lmdb_fail(err, "begin", rc);
	if (rl != NULL) {
		result =
		    rmw_in(s, txn, rkey, sizeof(struct bucket), MAX_BUCKETS, apply_rcpt, &rx, &rc);
		*free_at = rx.free_at;
		*recipients_full = result == STORE_FULL;
	}
	if (result == STORE_OK && count > 0) {
		result = rmw_in(s, txn, mkey, sizeof(uint64_t),
		                count < MAX_STAMPS ? count : MAX_STAMPS, apply_msg, &mx, &rc);
		*free_at = mx.free_at;
	}
	return finish(txn, result, rc, err);
}

struct slot_ctx {
	unsigned max;
	const struct holder *me;
};

static int
apply_slot_take(void *arr, size_t *n, void *c)
{
	struct slot_ctx *x = c;

	return win_slot_take(arr, n, MAX_HOLDERS, x->max, x->me, store_alive) ? STORE_OK
	                                                                      : STORE_FULL;
}

static int
apply_slot_release(void *arr, size_t *n, void *c)
{
	struct slot_ctx *x = c;

	win_slot_release(arr, n, x->me);
	return STORE_OK;
}

static int
lm_slot_take(struct store *st, const char *key, unsigned max, const struct holder *me,
             struct store_err *err)
{
	struct slot_ctx x = {max, me};

	return rmw((struct store_lmdb *)st, key, sizeof(struct holder), MAX_HOLDERS,
	           apply_slot_take, &x, err);
}

static int
lm_slot_release(struct store *st, const char *key, const struct holder *me, struct store_err *err)
{
	struct slot_ctx x = {0, me};

	return rmw((struct store_lmdb *)st, key, sizeof(struct holder), MAX_HOLDERS,
	           apply_slot_release, &x, err);
}

struct pause_ctx {
	uint64_t until, now, current;
};

static int
apply_pause(void *arr, size_t *n, void *c)
{
	struct pause_ctx *x = c;
	uint64_t *v = arr;

	if (*n == 0 || v[0] <= x->now)
		v[0] = 0; /* over: forget it */
	if (x->until > v[0])
		v[0] = x->until;
	*n = v[0] > 0;
	x->current = v[0];
	return STORE_OK;
}

static int
lm_pause(struct store *st, const char *key, uint64_t until, uint64_t now, uint64_t *current,
         struct store_err *err)
{
	struct store_lmdb *s = (struct store_lmdb *)st;
	struct pause_ctx x = {until, now, 0};
	int rc;

	if (until == 0) { /* a read: no write transaction, no sync */
		MDB_txn *txn;
		uint64_t v[1];
		size_t n;
		rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
		if (rc != 0)
			return lmdb_fail(err, "begin", rc);
		rc = get_array(s, txn, key, v, sizeof(v[0]), 1, &n, err);
		mdb_txn_abort(txn);
		if (rc != 0)
			return STORE_FAIL;
		*current = n == 1 && v[0] > now ? v[0] : 0;
		return STORE_OK;
	}
	rc = rmw(s, key, sizeof(uint64_t), 1, apply_pause, &x, err);
	*current = x.current;
	return rc;
}

static int
lm_usage(struct store *st, const char *km, const char *kr, const char *ks,
         const struct mailbox_conf *m, uint64_t now, struct store_usage *u, struct store_err *err)
{
	struct store_lmdb *s = (struct store_lmdb *)st;
	size_t cap = m->messages.count < MAX_STAMPS ? m->messages.count : MAX_STAMPS;
	uint64_t *stamps = calloc(cap, sizeof(*stamps));
	struct bucket b[MAX_BUCKETS];
	struct holder h[MAX_HOLDERS];
	MDB_txn *txn;
	size_t n;
	int rc;

	if (stamps == NULL)
		return store_fail(err, "out of memory");
	rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
	if (rc != 0) {
		free(stamps);
		return lmdb_fail(err, "begin", rc);
	}
	rc = get_array(s, txn, km, stamps, sizeof(*stamps), cap, &n, err);
	if (rc == 0)
		u->msgs = win_msg_count(stamps, n, m->messages.count, m->messages.window * 1000,
		                        now, &u->msg_free_at);
	if (rc == 0)
		rc = get_array(s, txn, kr, b, sizeof(*b), MAX_BUCKETS, &n, err);
	if (rc == 0)
		u->rcpts = win_rcpt_sum(b, n, m->recipients.count, m->recipients.window * 1000, now,
		                        &u->rcpt_free_at);
	if (rc == 0)
		rc = get_array(s, txn, ks, h, sizeof(*h), MAX_HOLDERS, &n, err);
	if (rc == 0)
		u->sessions = win_slot_count(h, n, store_alive);
	mdb_txn_abort(txn);
	free(stamps);
	return rc;
}

/* Journal ----------------------------------------------------------------------
 * Key: "j:" QID NUL RCPT.  Value: state (1 byte), time (8), reply text.
 */

static size_t
jkey(char *buf, size_t size, const char *qid, const char *rcpt)
{
	int n = snprintf(buf, size, "j:%s", qid);
	size_t len;

	if (n < 0 || (size_t)n + 1 >= size)
		return 0;
	len = (size_t)n + 1; /* keep the NUL as separator */
	if (rcpt != NULL) {
		size_t r = strlen(rcpt);
		if (len + r > size)
			return 0;
		memcpy(buf + len, rcpt, r);
		len += r;
	}
	return len;
}

static int
lm_journal_get(struct store *st, const char *qid, const char *rcpt, enum journal_state *state,
               char *reply, size_t size, struct store_err *err)
{
	struct store_lmdb *s = (struct store_lmdb *)st;
	char kb[1024];
	MDB_val k, v;
	MDB_txn *txn;
	int rc;

	*state = JOURNAL_NONE;
	if (size > 0)
		reply[0] = '\0';
	k.mv_size = jkey(kb, sizeof(kb), qid, rcpt);
	k.mv_data = kb;
	if (k.mv_size == 0)
		return store_fail(err, "journal key too long");
	rc = mdb_txn_begin(s->jenv, NULL, MDB_RDONLY, &txn);
	if (rc != 0)
		return lmdb_fail(err, "begin", rc);
	rc = mdb_get(txn, s->jdbi, &k, &v);
	if (rc == 0 && v.mv_size >= 9) {
		const char *p = v.mv_data;
		size_t tl = v.mv_size - 9;
		*state = (enum journal_state)p[0];
		if (size > 0) {
			if (tl >= size)
				tl = size - 1;
			memcpy(reply, p + 9, tl);
			reply[tl] = '\0';
		}
	}
	mdb_txn_abort(txn);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return lmdb_fail(err, "get", rc);
	return STORE_OK;
}

/* expire - drop journal entries older than the TTL (a queue file that
 * vanished without a final delivery, e.g. deleted by the administrator). */
static void
expire(struct store_lmdb *s, MDB_txn *txn, uint64_t now)
{
	MDB_cursor *c;
	MDB_val k = {2, (void *)"j:"}, v;
	int rc;

	if (mdb_cursor_open(txn, s->jdbi, &c) != 0)
		return;
	for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		uint64_t t;
		if (k.mv_size < 2 || memcmp(k.mv_data, "j:", 2) != 0)
			break;
		if (v.mv_size < 9)
			continue;
		memcpy(&t, (char *)v.mv_data + 1, 8);
		if (t + JOURNAL_TTL_MS < now)
			mdb_cursor_del(c, 0);
	}
	mdb_cursor_close(c);
}

/*
 * expire_due - the expiry scan, at most once every JOURNAL_EXPIRE_MS for
 * all processes together: the time of the last one is a record of its own
 * (a counter in each process would scan on every delivery, pipe(8) starting
 * one process per delivery), read and written in the caller's transaction.
 */
static void
expire_due(struct store_lmdb *s, MDB_txn *txn, uint64_t now)
{
	static const char key[] = "x:journal-expired";
	MDB_val k = {sizeof(key) - 1, (void *)key}, v;
	uint64_t last = 0;

	if (mdb_get(txn, s->jdbi, &k, &v) == 0 && v.mv_size == sizeof(last))
		memcpy(&last, v.mv_data, sizeof(last));
	if (last <= now && now - last < JOURNAL_EXPIRE_MS)
		return; /* (a stamp in the future - a clock set back - scans) */
	expire(s, txn, now);
	v.mv_size = sizeof(now);
	v.mv_data = &now;
	mdb_put(txn, s->jdbi, &k, &v, 0); /* if it fails, the next write scans */
}

static int
lm_journal_put(struct store *st, const char *qid, const char *rcpt, enum journal_state state,
               const char *reply, uint64_t now, struct store_err *err)
{
	struct store_lmdb *s = (struct store_lmdb *)st;
	char kb[1024], vb[9 + JOURNAL_REPLY_MAX];
	size_t tl = reply ? strnlen(reply, JOURNAL_REPLY_MAX) : 0;
	MDB_val k, v;
	MDB_txn *txn;
	int rc;

	k.mv_size = jkey(kb, sizeof(kb), qid, rcpt);
	k.mv_data = kb;
	if (k.mv_size == 0)
		return store_fail(err, "journal key too long");
	vb[0] = (char)state;
	memcpy(vb + 1, &now, 8);
	if (tl > 0)
		memcpy(vb + 9, reply, tl);
	v.mv_size = 9 + tl;
	v.mv_data = vb;
	rc = mdb_txn_begin(s->jenv, NULL, 0, &txn);
	if (rc != 0)
		return lmdb_fail(err, "begin", rc);
	expire_due(s, txn, now);
	rc = mdb_put(txn, s->jdbi, &k, &v, 0);
	if (rc == 0)
		rc = mdb_txn_commit(txn);
	else
		mdb_txn_abort(txn);
	if (rc != 0)
		return lmdb_fail(err, "journal write", rc);
	/*
	 * The commit flushed its data under the journal's writer lock
	 * (MDB_NOMETASYNC); the meta page that makes it the current state is
	 * flushed here, after the lock is released, so that the processes
	 * delivering at once wait for one flush each under the lock and not
	 * two, and their second flushes overlap.  Durable when this returns,
	 * as with a plain commit.
	 */
	rc = mdb_env_sync(s->jenv, 1);
	if (rc != 0)
		return lmdb_fail(err, "journal flush", rc);
	return STORE_OK;
}

/* drop_one - every entry of one queue file (journal key id) under c,
 * counted in *n; an LMDB error (a delete needs pages: MDB_MAP_FULL) */
static int
drop_one(MDB_cursor *c, const char *id, size_t *n)
{
	char kb[1024];
	size_t plen = jkey(kb, sizeof(kb), id, NULL);
	MDB_val k = {plen, kb}, v;
	int rc;

	if (plen == 0)
		return 0; /* no such key can exist */
	for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		if (k.mv_size < plen || memcmp(k.mv_data, kb, plen) != 0)
			break;
		rc = mdb_cursor_del(c, 0);
		if (rc != 0)
			return rc;
		(*n)++;
	}
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* drop_exact - one recipient's entry, counted in *n if it was there */
static int
drop_exact(struct store_lmdb *s, MDB_txn *txn, const struct journal_ref *r, size_t *n)
{
	char kb[1024];
	MDB_val k = {jkey(kb, sizeof(kb), r->qid, r->rcpt), kb};
	int rc;

	if (k.mv_size == 0)
		return 0; /* no such key can exist */
	rc = mdb_del(txn, s->jdbi, &k, NULL);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc == 0)
		(*n)++;
	return rc;
}

static int
lm_journal_drop(struct store *st, const struct journal_ref *refs, size_t n_ids,
                struct store_err *err)
{
	struct store_lmdb *s = (struct store_lmdb *)st;
	MDB_txn *txn;
	MDB_cursor *c;
	size_t i, n = 0;
	int rc;

	rc = mdb_txn_begin(s->jenv, NULL, 0, &txn);
	if (rc != 0)
		return lmdb_fail(err, "begin", rc);
	rc = mdb_cursor_open(txn, s->jdbi, &c);
	if (rc != 0) {
		mdb_txn_abort(txn);
		return lmdb_fail(err, "cursor", rc);
	}
	for (i = 0; i < n_ids && rc == 0; i++)
		rc = refs[i].rcpt != NULL ? drop_exact(s, txn, &refs[i], &n)
		                          : drop_one(c, refs[i].qid, &n);
	mdb_cursor_close(c);
	if (rc != 0) { /* said, not silently kept: the caller logs the entries */
		mdb_txn_abort(txn);
		return lmdb_fail(err, "journal drop", rc);
	}
	if (n == 0) { /* nothing of them: no commit, no flush */
		mdb_txn_abort(txn);
		return STORE_OK;
	}
	/*
	 * A drop need not be durable: lost in a machine crash, the entries
	 * expire by themselves (JOURNAL_TTL_MS) and, keyed by the message's
	 * fingerprint, are never found by another message.  So its commit
	 * flushes the data but not the meta page (MDB_NOMETASYNC: LMDB's
	 * integrity holds, the last commit may be undone by a crash; the next
	 * commit flushes it) and, unlike a put, the meta page is not flushed
	 * after it.  The LMTP service drops several queue files in one.
	 */
	rc = mdb_txn_commit(txn);
	if (rc != 0)
		return lmdb_fail(err, "commit", rc);
	return STORE_OK;
}

static int
lm_sync(struct store *st, struct store_err *err)
{
	struct store_lmdb *s = (struct store_lmdb *)st;
	int rc = mdb_env_sync(s->env, 1);

	return rc == 0 ? STORE_OK : lmdb_fail(err, "sync", rc);
}

static void
lm_close(struct store *st)
{
	struct store_lmdb *s = (struct store_lmdb *)st;

	if (s->env != NULL) {
		mdb_env_sync(s->env, 1); /* what this process counted, on disk */
		mdb_env_close(s->env);
	}
	if (s->jenv != NULL)
		mdb_env_close(s->jenv);
	free(s);
}

static const struct store_ops lmdb_ops = {
    .name = "lmdb",
    .msg_take = lm_msg_take,
    .msg_retime = lm_msg_retime,
    .rcpt_take = lm_rcpt_take,
    .rcpt_retime = lm_rcpt_retime,
    .admit = lm_admit,
    .slot_take = lm_slot_take,
    .slot_release = lm_slot_release,
    .pause = lm_pause,
    .usage = lm_usage,
    .journal_get = lm_journal_get,
    .journal_put = lm_journal_put,
    .journal_drop = lm_journal_drop,
    .sync = lm_sync,
    .close = lm_close,
};

/* open_env - one LMDB file (flags: MDB_NOSYNC, MDB_NOMETASYNC or 0) and its main database */
static int
open_env(const char *path, size_t size_mb, unsigned flags, MDB_env **envp, MDB_dbi *dbi,
         struct store_err *err)
{
	MDB_env *env;
	MDB_txn *txn;
	int rc, dead;

	*envp = NULL;
	rc = mdb_env_create(&env);
	if (rc != 0)
		return store_fail(err, "LMDB %s: %s", path, mdb_strerror(rc));
	rc = mdb_env_set_mapsize(env, size_mb << 20);
	if (rc == 0)
		rc = mdb_env_set_maxreaders(env, 256);
	if (rc == 0)
		rc = mdb_env_open(env, path, MDB_NOSUBDIR | MDB_NOTLS | flags, 0600);
	if (rc == 0 && (flags & MDB_WRITEMAP)) {
		/* Written through the map, a page in a hole of the (sparse) file
		 * meets a full disk as SIGBUS: the blocks are reserved now. */
		mdb_filehandle_t fd;
		MDB_envinfo info;
		rc = mdb_env_get_fd(env, &fd);
		if (rc == 0)
			rc = mdb_env_info(env, &info);
		/* the map LMDB uses: the file's own if it is larger than size */
		if (rc == 0)
			rc = posix_fallocate(fd, 0, (off_t)info.me_mapsize);
		if (rc != 0) {
			mdb_env_close(env);
			return store_fail(err,
			                  "LMDB %s: cannot reserve %zu MB (store { size }): %s",
			                  path, size_mb, strerror(rc));
		}
	}
	if (rc == 0) {
		/* Readers left by killed processes would pin old pages forever. */
		mdb_reader_check(env, &dead);
		rc = mdb_txn_begin(env, NULL, 0, &txn);
		if (rc == 0)
			rc = mdb_dbi_open(txn, NULL, 0, dbi);
		if (rc == 0)
			rc = mdb_txn_commit(txn);
	}
	if (rc != 0) {
		mdb_env_close(env);
		return store_fail(err, "LMDB %s: %s", path, mdb_strerror(rc));
	}
	*envp = env;
	return STORE_OK;
}

enum whole { WHOLE_SOUND, WHOLE_TORN, WHOLE_UNKNOWN };

/* torn_rc - an LMDB error that says the file itself is broken */
static bool
torn_rc(int rc)
{
	return rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND || rc == MDB_INVALID;
}

/* readable_whole - whether LMDB reads every record and every free page of
 * path (the caller holds the boot lock: nobody else has it open); any
 * other failure (memory, permissions) says nothing about the file */
static enum whole
readable_whole(const char *path, size_t size_mb)
{
	MDB_env *env;
	MDB_txn *txn = NULL;
	MDB_cursor *c;
	MDB_dbi dbi;
	MDB_val k, v;
	int rc, r2 = MDB_NOTFOUND;

	if (mdb_env_create(&env) != 0)
		return WHOLE_UNKNOWN;
	mdb_env_set_mapsize(env, size_mb << 20);
	rc = mdb_env_open(env, path, MDB_NOSUBDIR | MDB_RDONLY | MDB_NOLOCK, 0600);
	if (rc == 0)
		rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
	if (rc == 0)
		rc = mdb_dbi_open(txn, NULL, 0, &dbi);
	/* The main tree, then the free list (database 0, as mdb_stat -f reads it). */
	if (rc == 0 && (rc = mdb_cursor_open(txn, dbi, &c)) == 0) {
		while ((rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) == 0)
			;
		mdb_cursor_close(c);
	}
	if (rc == MDB_NOTFOUND && (r2 = mdb_cursor_open(txn, 0, &c)) == 0) {
		while ((r2 = mdb_cursor_get(c, &k, &v, MDB_NEXT)) == 0)
			;
		mdb_cursor_close(c);
	}
	if (txn != NULL)
		mdb_txn_abort(txn);
	mdb_env_close(env);
	if (rc == MDB_NOTFOUND && r2 == MDB_NOTFOUND)
		return WHOLE_SOUND;
	return torn_rc(rc) || torn_rc(r2) ? WHOLE_TORN : WHOLE_UNKNOWN;
}

/* this_boot - the kernel's id of this boot (M365RELAY_TEST_BOOT_ID in tests) */
static void
this_boot(char *buf, size_t size)
{
	const char *t = getenv("M365RELAY_TEST_BOOT_ID");
	FILE *fp;

	buf[0] = '\0';
	if (t != NULL) {
		m3_strlcpy(buf, t, size);
		return;
	}
	fp = fopen("/proc/sys/kernel/random/boot_id", "r");
	if (fp != NULL) {
		if (fgets(buf, (int)size, fp) == NULL)
			buf[0] = '\0';
		fclose(fp);
	}
	buf[strcspn(buf, "\n")] = '\0';
}

/*
 * boot_check - the first opener of the counters after a reboot reads the
 * whole file, and moves it aside if LMDB cannot (the top of this file says
 * why).  PATH.boot holds the boot the file was last checked in; its lock
 * makes the others wait for the check.
 */
static int
boot_check(const char *path, size_t size_mb, struct store_err *err)
{
	char stamp[4096], boot[64], seen[64] = "", aside[4200];
	struct stat st;
	ssize_t n;
	int fd;

	this_boot(boot, sizeof(boot));
	if (boot[0] == '\0' ||
	    snprintf(stamp, sizeof(stamp), "%s.boot", path) >= (int)sizeof(stamp))
		return STORE_OK; /* no boot id: nothing to compare (not Linux) */
	fd = open(stamp, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return STORE_OK; /* the store's own open says what is wrong there */
	if (flock(fd, LOCK_EX) < 0) {
		close(fd);
		return store_fail(err, "%s: lock: %s", stamp, strerror(errno));
	}
	n = pread(fd, seen, sizeof(seen) - 1, 0);
	seen[n > 0 ? n : 0] = '\0';
	if (strcmp(seen, boot) != 0 && stat(path, &st) == 0) {
		enum whole w;
		/* A check that died in this boot (LMDB can abort on a broken
		 * page) left "checking BOOT": the file is torn, not read again. */
		snprintf(aside, sizeof(aside), "checking %s", boot);
		if (strcmp(seen, aside) == 0) {
			w = WHOLE_TORN;
		} else {
			if (ftruncate(fd, 0) < 0 || pwrite(fd, aside, strlen(aside), 0) < 0 ||
			    fsync(fd) < 0) {
				close(fd);
				return store_fail(err, "%s.boot: %s", path, strerror(errno));
			}
			w = readable_whole(path, size_mb);
		}
		if (w == WHOLE_UNKNOWN) {
			/* the next opener tries again: the marker goes */
			if (ftruncate(fd, 0) < 0 || pwrite(fd, seen, strlen(seen), 0) < 0)
				log_warn("%s.boot", path);
			close(fd);
			return store_fail(err, "%s: cannot check it after a restart of the machine",
			                  path);
		}
		if (w == WHOLE_TORN) {
			snprintf(aside, sizeof(aside), "%s.torn-%llu", path,
			         (unsigned long long)store_now());
			if (rename(path, aside) < 0) {
				int e = errno;
				close(fd);
				return store_fail(
				    err, "%s: torn by a crash, and cannot be moved aside: %s", path,
				    strerror(e));
			}
			snprintf(stamp, sizeof(stamp), "%s-lock", path);
			unlink(stamp);
			log_warnx("state store %s: cut short by a crash of the machine "
			          "(LMDB cannot read it whole); moved to %s, the counters "
			          "start again",
			          path, aside);
		}
	}
	if (strcmp(seen, boot) != 0 &&
	    (ftruncate(fd, 0) < 0 || pwrite(fd, boot, strlen(boot), 0) < 0 || fsync(fd) < 0)) {
		close(fd);
		return store_fail(err, "%s.boot: %s", path, strerror(errno));
	}
	close(fd); /* and the lock with it */
	return STORE_OK;
}

struct store *
store_lmdb_open(const struct conf *conf, struct store_err *err)
{
	struct store_lmdb *s = calloc(1, sizeof(*s));
	size_t mb = (size_t)conf->store.size_mb;

	if (s == NULL) {
		store_fail(err, "out of memory");
		return NULL;
	}
	s->base.ops = &lmdb_ops;
	if (boot_check(conf->store.path, mb, err) < 0 ||
	    open_env(conf->store.path, mb, MDB_NOSYNC | MDB_WRITEMAP, &s->env, &s->dbi, err) < 0 ||
	    open_env(conf->store.journal_path, mb, MDB_NOMETASYNC, &s->jenv, &s->jdbi, err) < 0) {
		lm_close(&s->base);
		return NULL;
	}
	return &s->base;
}
