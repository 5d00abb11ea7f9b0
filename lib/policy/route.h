/*
 * route.h - the route header: how the milter tells the transport (and the
 * logs) what it decided, signed so that the transport can tell the milter's
 * word from anybody else's.
 *
 *   X-M365Relay-Route: v=2; mode=smtp-auth; tenant=contoso;
 *	domain=contoso.com; submitter=erp; mailbox=erp@contoso.com;
 *	qid=4XYZ1234; key=1a2b3c4d; mac=<64 hex digits>
 *
 * mac is HMAC-SHA-256, with a key from route_key_file, over
 *
 *   "m365relay-route" LF <envelope sender as the milter left it> LF
 *   <the value up to "; mac=", in the canonical form of route_format()>
 *
 * (the sender as addr_format() writes it with the domain in lower case,
 * "" for <>)
 *
 * so it binds every route field, the Postfix queue id the milter saw, and
 * the envelope sender.  Not the recipients: aliasing and Postfix's
 * splitting of a delivery change them after the milter, and the policy's
 * recipient checks do not depend on the route.  key= names the key (the
 * first 8 hex digits of a digest of it), so that a rotation can say which
 * key a message was signed with.  Folding on the way does not matter: the
 * transport checks the canonical form rebuilt from the parsed fields.
 *
 * The milter removes every copy a client sent and adds exactly one; the
 * transport reads it, removes it before sending, and trusts it only when
 * route_verify() says ROUTE_TRUSTED.  (SECURITY explains what this does
 * and does not protect.)
 *
 * Pure: no I/O.  route_parse() refuses anything it does not fully
 * understand.  Key files: routekey.h.
 */
#ifndef M3_ROUTE_H
#define M3_ROUTE_H

#include <stddef.h>

#include "conf/conf.h"
#include "policy.h"

#define ROUTE_HEADER   "X-M365Relay-Route"
#define ROUTE_TEXT_MAX 1024 /* a formatted, signed route fits in this */
#define ROUTE_QID_MAX  32   /* Postfix long queue ids are 12-20 characters */

struct route {
	enum mode mode;
	char tenant[128];
	char domain[ADDR_DOMAIN_MAX + 1];
	char submitter[128];
	char mailbox[ADDR_TEXT_MAX + 1]; /* "" when none */
	char connector[128];             /* "" when none */
	char qid[ROUTE_QID_MAX + 1];     /* the queue id it was signed for */
	char kid[ROUTE_KID_LEN + 1];     /* which key signed it; "" unsigned */
	char mac[65];                    /* hex HMAC-SHA-256, "" when unsigned */
};

/* How far a route may be believed. */
enum route_trust {
	ROUTE_TRUSTED,        /* made by our milter for this message */
	ROUTE_UNSIGNED,       /* no signature (or no key to check it with) */
	ROUTE_UNKNOWN_KEY,    /* signed with a key route_key_file no longer holds */
	ROUTE_FORGED,         /* the signature does not match what it covers */
	ROUTE_OTHER_QUEUE_ID, /* genuine, but for another queue id (requeued) */
};

/* route_from_policy - the route of an accepted message */
void route_from_policy(const struct policy_msg *m, struct route *r);
/* route_format - the value without its signature; -1 if it does not fit */
int route_format(const struct route *r, char *buf, size_t size);
/* route_parse - a header value back into a route; -1 (err set) if malformed */
int route_parse(const char *value, struct route *r, const char **err);
/* route_sign - set r's qid, kid and mac, and write the signed value; -1 if it does not fit */
int route_sign(struct route *r, const char *qid, const struct addr *sender,
               const struct route_key *key, char *buf, size_t size);
/* route_verify - whether r was signed by one of keys for this queue id and sender */
enum route_trust route_verify(const struct route *r, const char *qid, const struct addr *sender,
                              const struct route_key *keys, size_t n);
/* route_trust_text - "not signed", "signed for another queue id", ... for logs */
const char *route_trust_text(enum route_trust t);

#endif
