/*
 * admission.h - step 6, after policy.h's five: whether an accepted message
 * fits its mailbox's windows, as a pure function.
 *
 * The milter counts a message against the mailbox's windows in the state
 * store (namespace "adm") at end of message, so that a device over
 * Exchange Online's limits hears so at SMTP time instead of filling the
 * queue.  What to ask the store and what to answer are decided here; the
 * milter only carries the question to the store and the answer back:
 *
 *   admission_ask()    which windows count this message (none: the
 *                      transport paces it, or both actions are accept)
 *   admission_reply()  the reply, given the store's answer: over a limit,
 *                      the configured action (messages_action,
 *                      recipients_action); the store failing, store
 *                      { on_error }.  Accept leaves r as it is.
 *
 * No I/O, no clock: "now" is inside the store's answer (free_at).
 */
#ifndef M3_ADMISSION_H
#define M3_ADMISSION_H

#include <stdbool.h>
#include <stdint.h>

#include "conf/conf.h"
#include "policy.h"

struct admit_ask {
	bool recipients; /* take the message's recipients from the recipient window */
	bool messages;   /* then one message from the message window */
};

enum admit_result {
	ADMIT_OK,     /* every window asked had room (or none was asked) */
	ADMIT_FULL,   /* a window is full: which one and until when below */
	ADMIT_FAILED, /* the store could not answer */
};

struct admit_answer {
	enum admit_result result;
	bool recipients;  /* ADMIT_FULL: the recipient window (else the message window) */
	uint64_t free_at; /* ADMIT_FULL: ms since the epoch; UINT64_MAX: never (over the limit at
	                     once) */
};

/* admission_ask - the windows to count m against (both false: nothing to ask) */
void admission_ask(const struct conf *conf, const struct policy_msg *m, struct admit_ask *ask);

/* admission_reply - r for the store's answer a (r untouched when the message fits) */
void admission_reply(const struct conf *conf, const struct policy_msg *m,
                     const struct admit_answer *a, struct reply *r);

#endif
