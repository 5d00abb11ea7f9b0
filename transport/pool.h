/*
 * pool.h - the LMTP service's sessions to Microsoft 365, kept open across
 * messages (pool.c).
 *
 * pipe(8) mode opens a session per delivery; the LMTP service (lmtp.c)
 * lives as long as Postfix's lmtp(8) keeps its connection, so it keeps
 * what a delivery would otherwise throw away: the state store's handle,
 * and each SMTP session that ended cleanly, authenticated, under TLS.
 * The next message for the same mailbox (SMTP AUTH, HVE) or the same
 * connector or MX endpoint (relay, Direct Send) takes the session back
 * after an RSET that Microsoft answered 250; a session that does not
 * answer so is closed and a new one opened, with nothing sent.
 *
 * A kept session of a mailbox holds one of the mailbox's session slots
 * (store_slot_take) for as long as it is open: with every process's kept
 * and working sessions counted, a mailbox never has more than its
 * `sessions` at Microsoft.  So that a slot held by an idle session never
 * makes another delivery wait long: a kept session closes after
 * transport { session_idle } seconds unused, a process that must wait
 * for a slot first closes the idle sessions it keeps (no two processes
 * can then wait on each other), and no session is used beyond
 * transport { session_reuse_limit } seconds after it was opened.
 */
#ifndef M3_POOL_H
#define M3_POOL_H

#include <stdint.h>

#include "net/smtp.h"
#include "store/store.h"

struct plan;
struct conf;

#define POOL_MAX 8 /* sessions one process keeps; the least recently used goes first */

struct pooled {
	bool used;
	char key[600];               /* mode, endpoint, the mailbox or connector: pool_key() */
	char mailbox[320];           /* the slot's mailbox, "" when it holds none */
	struct holder me;            /* the slot's holder */
	struct smtp s;               /* open, authenticated, between transactions */
	uint64_t opened, idle_since; /* store_now() ms */
};

/* Finished deliveries whose journal entries go in one write: at most
 * POOL_DROPS recipients' entries, at most POOL_DROP_MS after the first. */
#define POOL_DROPS   256
#define POOL_DROP_MS 1000

struct pending_drop {
	char jid[80]; /* struct delivery's jid */
	char qid[40]; /* for the log */
	char *rcpt;
};

struct pool {
	const struct conf *conf;
	struct store *st; /* the service's handle, opened on first use */
	struct pooled e[POOL_MAX];
	unsigned reused; /* sessions taken back, for the log at the end */
	struct pending_drop *drops;
	size_t n_drops, cap_drops;
	uint64_t drops_since; /* store_now() ms of the first */
	/* Keep no session that holds a mailbox's slot (the handoff daemon's
	 * workers, forkserver.c): its ten workers take deliveries in any
	 * order, so one holding a mailbox's slots idle would leave the
	 * others that took that mailbox's mail waiting for session_idle. */
	bool no_slotted;
};

void pool_init(struct pool *pl, const struct conf *conf);
/* pool_store - the kept store handle, opened if need be; NULL with e set */
struct store *pool_store(struct pool *pl, struct store_err *e);
/* (a Redis handle reconnects by itself, an LMDB one needs nothing) */
/* pool_take - p's kept session, checked with an RSET, into s (its slot
 * with it: *slot, *me; when it was opened: *opened); 1 one was taken, 0
 * none (open a new one) */
int pool_take(struct pool *pl, const struct plan *p, struct smtp *s, bool *slot, struct holder *me,
              uint64_t *opened);
/* pool_put - keep s (and its slot) for the next message to p's endpoint;
 * s is emptied; closed instead, its slot released, when keeping is off */
void pool_put(struct pool *pl, const struct plan *p, struct smtp *s, bool slot,
              const struct holder *me, uint64_t opened);
/* pool_drop_slots - close the kept sessions that hold a slot (before
 * waiting for one, or for a window) */
void pool_drop_slots(struct pool *pl);
/* pool_drop_mailbox - close a kept session of mailbox (before a slot of
 * it is taken: a process is one holder in the store, so a second slot
 * would be the first one, and releasing it would free the kept one's) */
void pool_drop_mailbox(struct pool *pl, const char *mailbox);
/* pool_drop_journal - the journal entries of a finished delivery (its n
 * recipients) go with the next batch (jid: the journal key, qid: for the
 * log).  Keyed by the
 * message's fingerprint, an entry waiting for its batch is never found by
 * another message; one left behind (a process killed) expires by itself. */
void pool_drop_journal(struct pool *pl, const char *jid, const char *qid, const char *const *rcpts,
                       size_t n);
/* pool_drops_due - write the batch if it is due (before a delivery: one
 * that waits for its pacing window would otherwise hold it back) */
void pool_drops_due(struct pool *pl, uint64_t now);
/* pool_expire - close what has idled too long, write a batch of drops
 * that is due; the ms until the next is due, or -1 if nothing is kept */
int pool_expire(struct pool *pl, uint64_t now);
/* pool_close - QUIT every session, give the slots back, write the drops,
 * close the store */
void pool_close(struct pool *pl);

#endif
