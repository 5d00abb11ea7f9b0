/*
 * outcome.h - the one place that turns results into pipe(8) exit codes.
 *
 * Postfix pipe(8) (and sys_exits.c) defer only on exit 75 (EX_TEMPFAIL)
 * and 71 (EX_OSERR); every other status bounces, and a first output line
 * starting with 4.X.Y or 5.X.Y overrides the status.  So:
 *
 *   delivered            exit 0
 *   deferred             exit 75, first line "4.X.Y ..."
 *   bounced              exit 69 (EX_UNAVAILABLE), first line "5.X.Y ..."
 *
 * and anything that is not a deliberate bounce (a crash path, a
 * configuration error, a network failure, a token endpoint failure, a
 * Microsoft refusal that means our configuration is wrong) defers.
 *
 * Microsoft's replies are classified here; the known ones also carry a
 * one-line hint of the fix, logged next to the reply.
 */
#ifndef M3_OUTCOME_H
#define M3_OUTCOME_H

#include "smtp.h"

enum reply_class {
	RC_OK,	   /* 2xx */
	RC_TEMP,   /* 4xx (and 1xx/3xx, which cannot end a delivery): retry later */
	RC_CONFIG, /* 5xx that means our side is misconfigured: defer, fix, flush */
	RC_PERM,   /* 5xx about this message or recipient: bounce */
};

enum outcome_kind { OUT_SENT, OUT_DEFER, OUT_BOUNCE };

struct outcome {
	enum outcome_kind kind;
	char line[1200]; /* the first output line, "4.X.Y ..." / "5.X.Y ..." */
};

/* reply_classify - what a reply means for the recipients it concerns */
enum reply_class reply_classify(const struct smtp_reply *r);
/* reply_hint - one line on how to fix a known Microsoft reply, or NULL */
const char *reply_hint(const struct smtp_reply *r);

/* outcome_reply - from Microsoft's reply: "X.Y.Z <code> <text>" (class decides X) */
void outcome_reply(struct outcome *o, const char *host, const struct smtp_reply *r);
/* outcome_local - a local condition: status and text of ours */
void outcome_local(struct outcome *o, enum outcome_kind kind, const char *status,
		   const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* outcome_exit - print the first line (if any) and return the exit status */
int outcome_exit(const struct outcome *o);

#endif
