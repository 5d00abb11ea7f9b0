/*
 * lib/store/ - the state that outlives a process: the window rules
 * (window.h), the store contract (store.h), its two backends (store_lmdb.c,
 * store_redis.c, which reach the shared code through the private
 * store_impl.h) and the Redis reply parser (redis_reply.h).  May include
 * util/ and conf/.
 *
 * store.h - the state that outlives a process: rate-limit windows, session
 * slots and the delivery journal, shared by the milter, every transport
 * process and m365ctl.
 *
 * Backends: LMDB (embedded, the default: two files under state_dir,
 * counters and journal, multi-process and crash safe; store_lmdb.c says
 * what a crash costs each) and Redis (several gateways sharing one
 * set of counters).  Both implement the rules of window.h.
 *
 * Namespaces keep the milter's admission counts ("adm") apart from what
 * the transports actually sent ("out").
 *
 * Errors: every call returns STORE_OK, STORE_FULL (a limit says no; the
 * free_at output says when) or STORE_FAIL (the store itself failed: err
 * says why).  Callers decide what a failure means; nothing here exits.
 * The clock is the caller's (milliseconds), so tests can fake it.
 */
#ifndef M3_STORE_H
#define M3_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "conf/conf.h"
#include "window.h"

enum store_status { STORE_OK = 0, STORE_FULL = 1, STORE_FAIL = -1 };

/* What went wrong, for decisions and tests (msg is for people). */
enum store_code {
	STORE_EFAIL = 1, /* the store could not answer (down, I/O, bad data) */
	STORE_EMAPFULL,  /* LMDB's map is full: raise store { size } */
};

struct store_err {
	enum store_code code;
	char msg[256];
};

struct store;

/* store_open - open the configured backend (creating the LMDB file) */
struct store *store_open(const struct conf *conf, struct store_err *err);
/* store_sync - counters written so far to disk (LMDB: the sync its commits
 * skip, store_lmdb.c says why; Redis: nothing to do) */
int store_sync(struct store *s, struct store_err *err);
/* store_close - NULL is fine */
void store_close(struct store *s);

/*
 * Messages: take one admission in ns for mailbox: at most count in any
 * window_ms.  STORE_OK: *free_at is the stamp recorded (now, or the latest
 * stamp when that one is ahead of now: stamps stay in order), the value to
 * give store_msg_retime.  STORE_FULL: *free_at is when one fits.
 */
int store_msg_take(struct store *s, const char *ns, const char *mailbox, uint64_t count,
                   uint64_t window_ms, uint64_t now, uint64_t *free_at, struct store_err *err);
/*
 * Messages, for a sender: like store_msg_take, but the stamp is now +
 * hold_ms, so the message holds its place while in flight however long it
 * takes (window.h); the sender must then store_msg_retime it to when it
 * went, or to 0 to release it when nothing was sent.
 */
int store_msg_hold(struct store *s, const char *ns, const char *mailbox, uint64_t count,
                   uint64_t window_ms, uint64_t now, uint64_t hold_ms, uint64_t *free_at,
                   struct store_err *err);
/*
 * Messages: move our admission stamp to when the message actually went
 * (or to 0: released).  Counting from that time keeps the count at the
 * receiver under the limit whatever the delay between admission and
 * arrival.
 */
int store_msg_retime(struct store *s, const char *ns, const char *mailbox, uint64_t count,
                     uint64_t old_stamp, uint64_t new_stamp, struct store_err *err);
/* Recipients: add k in ns for mailbox, rolling buckets */
int store_rcpt_take(struct store *s, const char *ns, const char *mailbox, const struct limit *l,
                    uint64_t k, uint64_t now, uint64_t *free_at, struct store_err *err);
/*
 * Recipients, for a sender: like store_rcpt_take, but counted at now +
 * hold_ms (returned in *free_at: the stamp to retime), so they hold their
 * place while in flight; the sender must then store_rcpt_retime them to
 * when they went, or to 0 when nothing was sent.  Counted from the time
 * the message reached Microsoft, not from when it was admitted, the
 * window there never holds more than the limit, however long the message
 * took to get there (a soak in LMTP mode saw 554 5.2.0 quota replies when
 * the recipients counted from their admission).
 */
int store_rcpt_hold(struct store *s, const char *ns, const char *mailbox, const struct limit *l,
                    uint64_t k, uint64_t now, uint64_t hold_ms, uint64_t *free_at,
                    struct store_err *err);
int store_rcpt_retime(struct store *s, const char *ns, const char *mailbox, const struct limit *l,
                      uint64_t k, uint64_t old_stamp, uint64_t new_stamp, struct store_err *err);
/*
 * The milter's admission: k recipients in the recipient window (rl, or
 * NULL to skip it), then, if they fit, one message in the message window
 * (count per window_ms, or count 0 to skip it) - store_rcpt_take then
 * store_msg_take, in one transaction where the backend has them (LMDB).
 * STORE_FULL: *recipients_full says which window said no, *free_at when.
 */
int store_admit(struct store *s, const char *ns, const char *mailbox, const struct limit *rl,
                uint64_t k, uint64_t count, uint64_t window_ms, uint64_t now, uint64_t *free_at,
                bool *recipients_full, struct store_err *err);
/* Sessions: take a slot for me (dead holders are freed first) */
int store_slot_take(struct store *s, const char *mailbox, unsigned max, const struct holder *me,
                    struct store_err *err);
/* Sessions: give a slot back */
int store_slot_release(struct store *s, const char *mailbox, const struct holder *me,
                       struct store_err *err);

/*
 * Pauses: Microsoft asked a mailbox to wait (Graph's 429 Retry-After).
 * store_pause raises the mailbox's pause to until (milliseconds; never
 * lowers it; 0 only reads) and says in *current until when it holds, so
 * that every transport for the mailbox waits, not only the one told.
 */
int store_pause(struct store *s, const char *mailbox, uint64_t until, uint64_t now,
                uint64_t *current, struct store_err *err);

struct store_usage {
	uint64_t msgs, msg_free_at;   /* in the window; when the next may go */
	uint64_t rcpts, rcpt_free_at; /* counted; when one more may go */
	uint64_t sessions;            /* live holders */
};

/* store_usage - read-only view of a mailbox (m365ctl status, metrics) */
int store_usage(struct store *s, const char *ns, const struct mailbox_conf *m, uint64_t now,
                struct store_usage *u, struct store_err *err);

/* The delivery journal: what happened to each recipient of a queue file. */
enum journal_state { JOURNAL_NONE = 0, JOURNAL_ACCEPTED = 1, JOURNAL_FAILED = 2 };

#define JOURNAL_REPLY_MAX 480

/* store_journal_get - the recorded outcome (JOURNAL_NONE if none) */
int store_journal_get(struct store *s, const char *qid, const char *rcpt, enum journal_state *state,
                      char *reply, size_t size, struct store_err *err);
/* store_journal_put - record an outcome */
int store_journal_put(struct store *s, const char *qid, const char *rcpt, enum journal_state state,
                      const char *reply, uint64_t now, struct store_err *err);
/* store_journal_drop - forget every recipient of a queue file */
int store_journal_drop(struct store *s, const char *qid, struct store_err *err);
/* One recipient's entry of a queue file (rcpt NULL: every recipient). */
struct journal_ref {
	const char *qid, *rcpt;
};
/*
 * store_journal_forget - forget n entries in one write.  A delivery
 * forgets its own recipients only: Postfix splits a queue file with many
 * recipients into deliveries that may run at once, and one that finishes
 * must not take the entries of another that will be retried.
 */
int store_journal_forget(struct store *s, const struct journal_ref *refs, size_t n,
                         struct store_err *err);

/* store_self - this process as a slot holder */
void store_self(struct holder *me, uint64_t now);
/* store_alive - whether a holder's process still runs (same boot, same start) */
bool store_alive(const struct holder *h);
/* store_now - the real clock in milliseconds */
uint64_t store_now(void);

#endif
