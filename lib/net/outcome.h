/*
 * outcome.h - what a delivery attempt came to: sent, deferred or bounced,
 * with the line Postfix will show.  Anything that is not a deliberate
 * bounce (a crash path, a configuration error, a network failure, a token
 * endpoint failure, a Microsoft refusal that means our configuration is
 * wrong) defers.  The transport turns an outcome into pipe(8)'s exit
 * status (transport/status.c).
 *
 * Microsoft's replies are classified here; the known ones also carry a
 * one-line hint of the fix, logged next to the reply.
 */
#ifndef M3_OUTCOME_H
#define M3_OUTCOME_H

#include "smtp.h"

enum reply_class {
	RC_OK,     /* 2xx */
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
void outcome_local(struct outcome *o, enum outcome_kind kind, const char *status, const char *fmt,
                   ...) __attribute__((format(printf, 4, 5)));

#endif
