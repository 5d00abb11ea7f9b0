/*
 * admit.c - step 6 at end of message: carries admission_ask()'s question
 * to the state store and its answer back to admission_reply()
 * (lib/policy/admission.h decides; this file only talks to the store).
 */
#include "config.h"

#include "milter.h"
#include "policy/admission.h"

void
admission(const struct conf *conf, const struct policy_msg *m, struct reply *r)
{
	const struct mailbox_conf *mb = m->mailbox;
	struct admit_answer a = {ADMIT_OK, false, 0};
	struct admit_ask ask;
	struct store_err e = {0};
	struct store *st;
	uint64_t now = store_now();
	int rc = STORE_OK;

	r->verdict = VERDICT_ACCEPT;
	admission_ask(conf, m, &ask);
	if (!ask.recipients && !ask.messages)
		return; /* nothing to limit here: the transport paces */
	st = mstore_get(conf, &e);
	if (st == NULL) {
		mstore_health(STORE_FAIL, &e);
		a.result = ADMIT_FAILED;
	} else {
		bool rfull;
		rc = store_admit(st, "adm", mb->name, ask.recipients ? &mb->recipients : NULL,
		                 m->n_internal + m->n_external,
		                 ask.messages ? mb->messages.count : 0, mb->messages.window * 1000,
		                 now, &a.free_at, &rfull, &e);
		mstore_health(rc, &e);
		/* which window said no; when both were asked and both fit, the message's */
		a.recipients = ask.recipients && (rfull || !ask.messages);
		mstore_put();
		a.result = rc == STORE_OK ? ADMIT_OK : rc == STORE_FULL ? ADMIT_FULL : ADMIT_FAILED;
	}
	admission_reply(conf, m, &a, r);
}
