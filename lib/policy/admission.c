/*
 * admission.c - step 6: the reply for a mailbox's windows (admission.h).
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>

#include "admission.h"
#include "util/util.h"

void
admission_ask(const struct conf *conf, const struct policy_msg *m, struct admit_ask *ask)
{
	bool limited = mode_has_mailbox(m->mode) && m->mailbox != NULL;

	ask->recipients = limited && conf->milter.recipients_action != FAIL_ACCEPT;
	ask->messages = limited && conf->milter.messages_action != FAIL_ACCEPT;
}

static void
set(struct reply *r, enum verdict v, const char *code, const char *xcode, enum reason reason)
{
	r->verdict = v;
	m3_strlcpy(r->code, code, sizeof(r->code));
	m3_strlcpy(r->xcode, xcode, sizeof(r->xcode));
	r->reason = reason;
}

/* over - the answer for a mailbox over a limit, per the configured action */
static void over(enum fail_action act, struct reply *r, enum reason reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
over(enum fail_action act, struct reply *r, enum reason reason, const char *fmt, ...)
{
	va_list ap;

	if (act == FAIL_ACCEPT)
		return;
	if (act == FAIL_REJECT)
		set(r, VERDICT_REJECT, "550", "5.7.0", reason);
	else
		set(r, VERDICT_TEMPFAIL, "451", "4.7.0", reason);
	va_start(ap, fmt);
	vsnprintf(r->text, sizeof(r->text), fmt, ap);
	va_end(ap);
}

void
admission_reply(const struct conf *conf, const struct policy_msg *m, const struct admit_answer *a,
                struct reply *r)
{
	const struct mailbox_conf *mb = m->mailbox;
	char when[32], lim[32];

	switch (a->result) {
	case ADMIT_OK:
		return;
	case ADMIT_FULL:
		if (mb == NULL)
			return; /* nothing was asked */
		if (a->recipients)
			over(conf->milter.recipients_action, r, REASON_RECIPIENT_LIMIT,
			     "%s reached %s recipients; retry after %s", mb->name,
			     limit_format(&mb->recipients, lim, sizeof(lim)),
			     a->free_at == UINT64_MAX ? "never (more than the limit at once)"
			                              : m3_utc_hms(a->free_at, when, sizeof(when)));
		else
			over(conf->milter.messages_action, r, REASON_MESSAGE_LIMIT,
			     "%s reached %s messages; retry after %s", mb->name,
			     limit_format(&mb->messages, lim, sizeof(lim)),
			     m3_utc_hms(a->free_at, when, sizeof(when)));
		return;
	case ADMIT_FAILED:
		switch (conf->store.on_error) {
		case FAIL_ACCEPT:
			return;
		case FAIL_REJECT:
			set(r, VERDICT_REJECT, "550", "5.3.0", REASON_STORE_ERROR);
			break;
		case FAIL_TEMPFAIL:
			set(r, VERDICT_TEMPFAIL, "451", "4.3.0", REASON_STORE_ERROR);
			break;
		}
		snprintf(r->text, sizeof(r->text),
		         "Gateway state store unavailable; try again later");
		return;
	}
}
