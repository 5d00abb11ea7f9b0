/*
 * lib/policy/ - the decisions: the verdict (policy.h), the signed route
 * header that carries it to the transport (route.h) and the header set it
 * is taken from (hdrset.h).  No I/O, no clock.  May include util/, addr/
 * and conf/; never store/ or net/ (run-time facts arrive as plain values,
 * struct policy_facts).
 *
 * policy.h - the verdict engine: who may send as whom, which sender the
 * message leaves with, which recipients it may reach, and how it goes.
 *
 * A pure function of (configuration, submission): no I/O, no clock, no
 * globals.  The milter calls the stages as the SMTP transaction unfolds
 * (policy_mail at MAIL FROM, policy_rcpt at each RCPT TO, policy_eom at end
 * of message); tests and the transport call policy_evaluate(), which runs
 * them all in order.  Steps 1 to 5 (README, "The decisions, in short"):
 *
 *  1. submitter: SASL login, then certificate subject, then the most
 *     specific client block; no match -> 550 5.7.1.
 *  2. envelope sender: kept if in an accepted domain and allowed for the
 *     submitter, else rewritten to the domain's default sender; <> is kept.
 *  3. recipients: internal (an accepted domain of the tenant) or external;
 *     external ones are refused at RCPT when the domain has no way to reach
 *     them (Direct Send only, 5.7.54).
 *  4. Send As: the header From (and Sender) must be allowed for the
 *     submitter, and in smtp-auth mode for the mailbox, else
 *     550 5.7.60 SMTP; Client does not have permissions to send as this sender.
 *     A foreign From (not an accepted domain) is rewritten to the default
 *     sender instead when the domain says rewrite_header_from, keeping the
 *     display name and putting the original address in Reply-To; the
 *     default sender itself is then accepted as a From, so that a message
 *     the policy has rewritten passes it again unchanged (the transport
 *     decides again when it cannot trust the milter's route).
 *  5. mode: the domain's pinned mode, or (auto) a mailbox when the
 *     submitter has one of its own, else direct-send when every
 *     recipient is internal and the tenant allows it, else relay through
 *     the domain's connector, else the domain's mailbox.  Sending as a
 *     mailbox, the mailbox decides the protocol: hve for an HVE account
 *     (internal recipients only: external ones are refused at RCPT),
 *     graph when the domain says so or the mailbox has smtp_auth = no,
 *     else smtp-auth.
 *
 * Every refusal carries its SMTP reply (code, enhanced code, text) and a
 * short reason token for the log.
 */
#ifndef M3_POLICY_H
#define M3_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#include "addr/addr.h"
#include "addr/cidr.h"
#include "conf/conf.h"

/* VERDICT_NONE: the transaction ended (RSET, QUIT, a dropped connection)
 * before end of message, so the message got no verdict; the log and the
 * metrics say so (reason aborted) rather than "accept". */
enum verdict { VERDICT_ACCEPT, VERDICT_REJECT, VERDICT_TEMPFAIL, VERDICT_NONE, VERDICT_COUNT };

/*
 * Every reason a verdict can carry, with its token for the log and the
 * metrics label: the policy's, then the milter's own (admission, store,
 * internal errors, a transaction that ended early).  One list, so that a
 * new reason is counted and logged the same everywhere.
 */
#define M3_REASONS(X)                                                                              \
	X(REASON_OK, "ok")                                                                         \
	X(REASON_SENDER_REWRITTEN, "sender-rewritten")                                             \
	X(REASON_INTERNAL, "internal") /* an accepted recipient */                                 \
	X(REASON_EXTERNAL, "external")                                                             \
	X(REASON_UNKNOWN_SUBMITTER, "unknown-submitter")                                           \
	X(REASON_CONFIG_INCOMPLETE, "config-incomplete")                                           \
	X(REASON_RCPT_SYNTAX, "rcpt-syntax")                                                       \
	X(REASON_DIRECT_SEND_EXTERNAL, "direct-send-external")                                     \
	X(REASON_NO_EXTERNAL_ROUTE, "no-external-route")                                           \
	X(REASON_HVE_EXTERNAL, "hve-external")                                                     \
	X(REASON_RECIPIENTS_PER_MESSAGE, "recipients-per-message")                                 \
	X(REASON_NO_RECIPIENTS, "no-recipients")                                                   \
	X(REASON_NO_FROM, "no-from")                                                               \
	X(REASON_SEVERAL_FROM, "several-from")                                                     \
	X(REASON_FROM_SEVERAL_ADDRESSES, "from-several-addresses")                                 \
	X(REASON_FROM_SYNTAX, "from-syntax")                                                       \
	X(REASON_SEVERAL_SENDER, "several-sender")                                                 \
	X(REASON_SENDER_SYNTAX, "sender-syntax")                                                   \
	X(REASON_SEND_AS_DENIED, "send-as-denied")                                                 \
	X(REASON_SEND_AS_DENIED_MAILBOX, "send-as-denied-mailbox")                                 \
	X(REASON_SPF_NOT_AUTHORIZED, "spf-not-authorized")                                         \
	X(REASON_MESSAGE_LIMIT, "message-limit")                                                   \
	X(REASON_RECIPIENT_LIMIT, "recipient-limit")                                               \
	X(REASON_STORE_ERROR, "store-error")                                                       \
	X(REASON_INTERNAL_ERROR, "internal-error")                                                 \
	X(REASON_ABORTED, "aborted")

enum reason {
#define M3_REASON_ENUM(e, s) e,
	M3_REASONS(M3_REASON_ENUM)
#undef M3_REASON_ENUM
	    REASON_COUNT
};

/* verdict_name - the token of a verdict ("tempfail") */
const char *verdict_name(enum verdict v);
/* reason_name - the token of a reason ("send-as-denied") */
const char *reason_name(enum reason r);

struct reply {
	enum verdict verdict;
	char code[4];   /* "550" */
	char xcode[12]; /* "5.7.60" */
	char text[480]; /* without code and enhanced code */
	enum reason reason;
};

/* Who is talking to the gateway (what the MTA tells the milter). */
struct identity {
	const struct ipaddr *client; /* NULL if unknown */
	const char *sasl_login;      /* NULL or "" when not authenticated */
	const char *cert_subject;    /* NULL or "" without a client certificate */
	const struct submitter *as;  /* a submitter to use when nothing else matches
	                                (the transport's local_submitter), or NULL */
};

enum from_action {
	FROM_KEEP,    /* header From stays as it is */
	FROM_REWRITE, /* replaced by new_from (and Reply-To maybe added) */
	FROM_ADD,     /* there was none; new_from is added */
};

struct rcpt_verdict {
	struct addr addr;
	bool internal;
	struct reply reply;
};

/* The state of one message across the stages; zero it before policy_mail. */
struct policy_msg {
	char client_text[64];
	const struct submitter *submitter;
	const struct domain_policy *domain;
	const struct tenant *tenant;

	struct addr env_sender; /* as received (empty if unparseable or <>) */
	bool sender_null, sender_unparseable;
	bool sender_rewritten;
	struct addr final_sender; /* what the message leaves with */

	size_t n_internal, n_external, n_refused;

	enum mode mode;
	bool mode_chosen;                   /* policy_eom got as far as step 5 */
	const struct mailbox_conf *mailbox; /* smtp-auth */
	const struct connector *connector;  /* relay */

	struct addr from; /* header From as received, if parsed */
	enum from_action from_action;
	char new_from[ADDR_DISPLAY_MAX * 2 + ADDR_TEXT_MAX + 8];
	char new_reply_to[ADDR_DISPLAY_MAX * 2 + ADDR_TEXT_MAX + 8]; /* "" = none */
	bool delete_sender; /* remove the Sender header(s) */

	struct reply reply; /* the message's verdict so far */
};

/* The headers policy_eom looks at (raw values, unfolded or not). */
struct msg_headers {
	const char *const *from;
	size_t n_from;
	const char *const *sender;
	size_t n_sender;
	size_t n_reply_to;
};

/* A whole submission, for policy_evaluate(). */
struct submission {
	struct identity id;
	const char *env_sender; /* as in MAIL FROM: "<a@b>", "<>" or bare */
	const char *const *rcpts;
	size_t n_rcpts;
	struct msg_headers headers;
};

/*
 * The changes a verdict makes to an accepted message, in the order they
 * are applied: the milter maps each to an smfi_* call, the transport
 * (when it decides itself) to the message it sends.  The values are
 * copies held in the struct edits itself: it outlives the policy_msg.
 */
enum edit_op {
	EDIT_SENDER,      /* the envelope sender becomes value */
	EDIT_HEADER_SET,  /* the first `header` field's value becomes value */
	EDIT_HEADER_ADD,  /* a `header` field with value is added after the others */
	EDIT_HEADER_DROP, /* every `header` field goes */
	EDIT_ROUTE,       /* every route header goes; the milter then adds its own */
};

struct edit {
	enum edit_op op;
	const char *header; /* NULL for EDIT_SENDER */
	const char *value;  /* NULL for the drops */
};

#define EDITS_MAX 6

struct edits {
	struct edit e[EDITS_MAX];
	size_t n;
	char sender[ADDR_TEXT_MAX + 1]; /* EDIT_SENDER's value */
	char from[ADDR_DISPLAY_MAX * 2 + ADDR_TEXT_MAX + 8];
	char reply_to[ADDR_DISPLAY_MAX * 2 + ADDR_TEXT_MAX + 8];
};

/*
 * What the gateway knows at run time that is not configuration: which
 * domain policies' SPF does not authorize the gateway (require_spf_pass,
 * spfgate.h; indexed like conf->domains).  NULL, or a NULL array: nothing
 * known, nothing held back.
 */
struct policy_facts {
	const bool *spf_unauthorized;
};

/* policy_mail - steps 1 and 2 at MAIL FROM; m->reply says accept or refuse */
void policy_mail(const struct conf *conf, const struct identity *id, const char *env_sender,
                 struct policy_msg *m);
/* policy_rcpt - step 3 for one recipient; counts it in m if accepted */
void policy_rcpt(const struct conf *conf, struct policy_msg *m, const char *rcpt,
                 struct rcpt_verdict *rv);
/* policy_eom - steps 4 and 5 at end of message; sets m->reply */
void policy_eom(const struct conf *conf, const struct policy_facts *facts, struct policy_msg *m,
                const struct msg_headers *h);
/* policy_evaluate - every stage in order; rv (cap entries) gets each recipient's verdict */
void policy_evaluate(const struct conf *conf, const struct policy_facts *facts,
                     const struct submission *s, struct policy_msg *m, struct rcpt_verdict *rv,
                     size_t cap);

/* policy_edits - what an accepted message must become (EDIT_ROUTE always, last) */
void policy_edits(const struct policy_msg *m, struct edits *out);

/* policy_find_submitter - step 1 alone (NULL if nobody matches) */
const struct submitter *policy_find_submitter(const struct conf *conf, const struct identity *id);
/* reply_format - "550 5.7.60 text" */
const char *reply_format(const struct reply *r, char *buf, size_t size);
/* policy_summary - the key=value fields of the verdict log line */
const char *policy_summary(const struct policy_msg *m, char *buf, size_t size);

#endif
