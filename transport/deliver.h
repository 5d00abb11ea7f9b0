/*
 * deliver.h - one pipe(8) delivery, start to finish: the route, the
 * journal, pacing, the SMTP session in the chosen mode, the outcome of
 * every recipient, and the report for a mixed outcome.
 */
#ifndef M3_DELIVER_H
#define M3_DELIVER_H

#include <stddef.h>

#include "conf.h"
#include "message.h"
#include "outcome.h"

struct delivery {
	const struct conf *conf;
	const char *qid;    /* Postfix queue id (-q); journal key */
	const char *sender; /* envelope sender (-f); "" for <> */
	const char *sasl;   /* SASL login of the submitter (-s), or NULL */
	const char *const *rcpts;
	size_t n_rcpts;
	struct message msg;
};

/* deliver - do it; the outcome decides the exit status */
void deliver(struct delivery *d, struct outcome *o);

/* dsn_send - report recipients that failed while others were delivered */
int dsn_send(const struct delivery *d, const char *const *failed,
	     const char *const *replies, size_t n, char *err, size_t errlen);

#endif
