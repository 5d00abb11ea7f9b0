/*
 * route.h - the route header: how the milter tells the transport (and the
 * logs) what it decided.  The milter removes every copy a client sent and
 * adds exactly one; the transport reads it and removes it before sending.
 *
 *   X-M365Relay-Route: v=1; mode=smtp-auth; tenant=contoso;
 *	domain=contoso.com; submitter=erp; mailbox=erp@contoso.com
 *
 * Pure.  route_parse() refuses anything it does not fully understand.
 */
#ifndef M3_ROUTE_H
#define M3_ROUTE_H

#include <stddef.h>

#include "conf.h"
#include "policy.h"

#define ROUTE_HEADER "X-M365Relay-Route"

struct route {
	enum mode mode;
	char tenant[128];
	char domain[ADDR_DOMAIN_MAX + 1];
	char submitter[128];
	char mailbox[ADDR_TEXT_MAX + 1];   /* "" when none */
	char connector[128];		   /* "" when none */
};

/* route_from_policy - the route of an accepted message */
void route_from_policy(const struct policy_msg *m, struct route *r);
/* route_format - the header value; -1 if it does not fit */
int route_format(const struct route *r, char *buf, size_t size);
/* route_parse - a header value back into a route; -1 (err set) if malformed */
int route_parse(const char *value, struct route *r, const char **err);

#endif
