/*
 * store_impl.h - what a store backend provides (private to lib/store/).
 * Keys arrive fully formed: "msg:NS:MAILBOX", "rcpt:NS:MAILBOX",
 * "slot:MAILBOX", "pause:MAILBOX", and journal entries by queue id and recipient.
 */
#ifndef M3_STORE_IMPL_H
#define M3_STORE_IMPL_H

#include "store.h"

struct store_ops {
	const char *name;
	int (*msg_take)(struct store *, const char *key, uint64_t count, uint64_t window_ms,
	                uint64_t now, uint64_t hold_ms, uint64_t *free_at, struct store_err *);
	int (*msg_retime)(struct store *, const char *key, uint64_t count, uint64_t old_stamp,
	                  uint64_t new_stamp, struct store_err *);
	int (*rcpt_take)(struct store *, const char *key, const struct limit *, uint64_t k,
	                 uint64_t now, uint64_t hold_ms, uint64_t *free_at, struct store_err *);
	int (*rcpt_retime)(struct store *, const char *key, const struct limit *, uint64_t k,
	                   uint64_t old_stamp, uint64_t new_stamp, uint64_t now,
	                   struct store_err *);
	/* both windows in one step; NULL: store.c asks rcpt_take, then msg_take */
	int (*admit)(struct store *, const char *rcpt_key, const struct limit *, uint64_t k,
	             const char *msg_key, uint64_t count, uint64_t window_ms, uint64_t now,
	             uint64_t *free_at, bool *recipients_full, struct store_err *);
	int (*slot_take)(struct store *, const char *key, unsigned max, const struct holder *me,
	                 struct store_err *);
	int (*slot_release)(struct store *, const char *key, const struct holder *me,
	                    struct store_err *);
	int (*pause)(struct store *, const char *key, uint64_t until, uint64_t now,
	             uint64_t *current, struct store_err *);
	int (*usage)(struct store *, const char *msg_key, const char *rcpt_key,
	             const char *slot_key, const struct mailbox_conf *m, uint64_t now,
	             struct store_usage *, struct store_err *);
	int (*journal_get)(struct store *, const char *qid, const char *rcpt, enum journal_state *,
	                   char *reply, size_t size, struct store_err *);
	int (*journal_put)(struct store *, const char *qid, const char *rcpt, enum journal_state,
	                   const char *reply, uint64_t now, struct store_err *);
	int (*journal_drop)(struct store *, const struct journal_ref *refs, size_t n,
	                    struct store_err *);
	int (*sync)(struct store *, struct store_err *);
	void (*close)(struct store *);
};

struct store {
	const struct store_ops *ops;
};

struct store *store_lmdb_open(const struct conf *conf, struct store_err *err);
struct store *store_redis_open(const struct conf *conf, struct store_err *err);

/* store_fail - fill err (printf style) and return STORE_FAIL */
int store_fail(struct store_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define JOURNAL_TTL_MS    (7ULL * 86400 * 1000) /* beyond Postfix's queue lifetime */
#define JOURNAL_EXPIRE_MS (10ULL * 60 * 1000)   /* LMDB: scan for expired entries */

#endif
