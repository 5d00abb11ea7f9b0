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
	bool tls_required, tls_verify;
	const char *sender; /* MAIL FROM (may point into edits) */
	struct edits edits; /* the policy's, when it decided */
};

/* plan_delivery - step 1 into p; recipients the policy refuses are marked
 * in rc (first_temp: the first temporary refusal); the message is made
 * ready for the wire (the policy's edits applied when it decided) */
int plan_delivery(struct delivery *d, struct plan *p, struct rcpt *rc, struct outcome *first_temp,
                  bool *by_policy, struct outcome *o);

#endif
