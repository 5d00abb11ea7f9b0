/*
 * plan.h - what one delivery is made of, private to the transport:
 * each recipient's state across the steps, and the plan (mode, tenant,
 * mailbox or connector, endpoint, MAIL FROM) step 1 makes.
 *
 * Step 1 (plan.c): the milter's route header when it is signed for this
 * queue id and sender, otherwise the policy decides from what pipe(8)
 * gives (transport { unverified_route }).  Errors: -1 with the outcome
 * set (a deferral, or a bounce with the policy's own reply).
 */
#ifndef M3_PLAN_H
#define M3_PLAN_H

#include <stdbool.h>

#include "deliver.h"
#include "net/smtp.h"
#include "util/sbuf.h"
#include "policy/policy.h"
#include "store/store.h"

enum rstate { R_TODO, R_DONE, R_FAILED, R_TEMP };

struct rcpt {
	const char *addr;
	enum rstate state;
	char reply[JOURNAL_REPLY_MAX];
};

struct plan {
	enum mode mode;
	const struct tenant *tenant;
	const struct domain_policy *domain;
	const struct mailbox_conf *mailbox;
	const struct connector *connector;
	const char *host;
	unsigned port;
	char graph_host[256]; /* mode graph: the host of graph_endpoint */
	bool tls_required, tls_verify;
	const char *sender; /* MAIL FROM (may point into edits) */
	struct edits edits; /* the policy's, when it decided */
};

/* What the windows hold for a message in flight (take_windows), until
 * windows_went says when it went (or that nothing went) */
struct admission {
	uint64_t msg;  /* the message window's stamp, or 0 */
	uint64_t rcpt; /* the recipient window's stamp, or 0 */
	uint64_t k;    /* the recipients held there */
};

/* One attempt at a delivery: what the steps share. */
struct attempt {
	struct delivery *d;
	struct plan p;
	struct rcpt *rc;           /* per recipient of d */
	struct outcome first_temp; /* the first temporary failure, for the deferral */
	struct store *st;
	struct smtp s;
	void *curl;       /* mode graph: the connection kept for the delivery */
	struct sbuf mime; /* mode graph: what Graph is given */
	struct holder me; /* the session slot's holder, when slot */
	bool slot, by_policy;
	bool s_clean;         /* s is ready and no transaction began on it */
	uint64_t s_opened;    /* when s was opened (store_now()), for the pool */
	struct admission adm; /* the windows' places, to retime */
	const char **todo;    /* the recipients this attempt sends to */
	size_t n_todo, n_now;
	struct smtp_reply *rr, final; /* their RCPT replies; the end of DATA */
};

/* the steps deliver.c shares with graph.c */
int take_slot(const struct delivery *d, const struct plan *p, struct store *st,
              const struct holder *me, struct outcome *o);
int take_windows(const struct delivery *d, const struct plan *p, struct store *st, uint64_t k,
                 struct admission *adm, struct outcome *o);
/* windows_went - the message went at when (0: nothing was sent): its
 * places in both windows count from then (or are given back) */
void windows_went(const struct delivery *d, const struct plan *p, struct store *st,
                  struct admission *adm, uint64_t when);
/* rcpt_outcome - recipient i's reply r: its state, the journal, the log line */
void rcpt_outcome(struct attempt *a, size_t i, const struct smtp_reply *r);
/* graph_ready, graph_transact - steps 3 to 6 for mode graph (graph.c) */
int graph_ready(struct attempt *a, struct outcome *o);
void graph_transact(struct attempt *a);

/* plan_delivery - step 1 into p; recipients the policy refuses are marked
 * in rc (first_temp: the first temporary refusal); the message is made
 * ready for the wire (the policy's edits applied when it decided) */
int plan_delivery(struct delivery *d, struct plan *p, struct rcpt *rc, struct outcome *first_temp,
                  bool *by_policy, struct outcome *o);

#endif
