/*
 * plan.c - step 1 of a delivery (plan.h): who the message goes as and
 * where, from the milter's signed route or, when it cannot be trusted,
 * from the policy itself.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/spfgate.h"
#include "plan.h"
#include "policy/route.h"
#include "util/log.h"
#include "util/util.h"

/*
 * trusted_route - the milter's route, when it can be believed: exactly one
 * route header, well formed, signed by a key of route_key_file for this
 * queue id and sender.  Otherwise why says what is wrong with it.
 */
static bool
trusted_route(struct delivery *d, struct route *r, char *why, size_t size)
{
	const struct conf *c = d->conf;
	const char *err;
	enum route_trust t;

	if (d->msg.hdr.n_route == 0) {
		snprintf(why, size, "no %s header (the message did not pass m365-milter)",
		         ROUTE_HEADER);
		d->untrusted = "no route header";
		return false;
	}
	if (d->msg.hdr.n_route > 1) {
		snprintf(why, size, "%zu %s headers", d->msg.hdr.n_route, ROUTE_HEADER);
		d->untrusted = "several route headers";
		return false;
	}
	if (route_parse(d->msg.hdr.route, r, &err) < 0) {
		snprintf(why, size, "malformed %s header (%s)", ROUTE_HEADER, err);
		d->untrusted = "malformed route header";
		return false;
	}
	t = route_verify(r, d->qid, &d->sender_addr, c->route_keys, c->n_route_keys);
	d->untrusted = t == ROUTE_UNSIGNED         ? "route not signed"
	               : t == ROUTE_UNKNOWN_KEY    ? "route signed with an unknown key"
	               : t == ROUTE_FORGED         ? "route signature does not verify"
	               : t == ROUTE_OTHER_QUEUE_ID ? "route signed for another queue id"
	                                           : NULL;
	if (t == ROUTE_TRUSTED)
		return true;
	snprintf(why, size, "%s header %s%s%s%s", ROUTE_HEADER, route_trust_text(t),
	         t == ROUTE_OTHER_QUEUE_ID ? " "
	         : t == ROUTE_UNKNOWN_KEY  ? " (key "
	                                   : "",
	         t == ROUTE_OTHER_QUEUE_ID ? r->qid
	         : t == ROUTE_UNKNOWN_KEY  ? r->kid
	                                   : "",
	         t == ROUTE_UNKNOWN_KEY ? ")" : "");
	return false;
}

static int
plan_from_route(const struct delivery *d, const struct route *r, struct plan *p, struct outcome *o)
{
	const struct conf *c = d->conf;
	size_t i;

	p->mode = r->mode;
	p->domain = conf_domain(c, r->domain);
	if (p->domain == NULL || p->domain->tenant == NULL) {
		outcome_local(o, OUT_DEFER, "4.3.5",
		              "the route names domain %s, which the configuration no "
		              "longer has",
		              r->domain);
		return -1;
	}
	p->tenant = p->domain->tenant;
	if (r->mailbox[0] != '\0') {
		struct addr a;
		struct addr_err ae;
		if (addr_parse_path(r->mailbox, strlen(r->mailbox), false, &a, &ae) == 0)
			p->mailbox = conf_mailbox(c, &a);
		if (p->mailbox == NULL) {
			outcome_local(o, OUT_DEFER, "4.3.5",
			              "the route names mailbox %s, which the "
			              "configuration no longer has",
			              r->mailbox);
			return -1;
		}
	}
	if (r->connector[0] != '\0') {
		for (i = 0; i < c->n_connectors; i++)
			if (strcmp(c->connectors[i].name, r->connector) == 0)
				p->connector = &c->connectors[i];
		if (p->connector == NULL) {
			outcome_local(o, OUT_DEFER, "4.3.5",
			              "the route names connector %s, which the "
			              "configuration no longer has",
			              r->connector);
			return -1;
		}
	}
	p->sender = d->sender;
	return 0;
}

/* policy_line - "5.7.60 text" from a policy reply */
static void
policy_line(const struct reply *r, char *buf, size_t size)
{
	snprintf(buf, size, "%s %s", r->xcode, r->text);
}

/* gate_log - require_spf_pass findings worth a line (not the passes) */
static void
gate_log(void *arg, enum spfgate_level lvl, const char *line)
{
	const struct delivery *d = arg;

	if (lvl != SPFGATE_INFO)
		log_warnx("%s: %s", d->qid, line);
}

/*
 * plan_from_policy - mail whose route cannot be trusted: the same policy
 * as the milter's decides, from what pipe(8) gives: the client address
 * (-a), the SASL login (-s), the envelope, the headers.  Its verdict is
 * applied in full (edits: the sender, From, Reply-To, Sender), refusals
 * bounce with the policy's own reply, and each recipient the policy
 * refuses is refused alone (a report tells the sender, as for Microsoft's
 * refusals).  Local mail (an empty client address) is the local
 * submitter's.  There is no certificate subject here: pipe(8) does not
 * pass one, so a submitter known only by its certificate is not found.
 */
static int
plan_from_policy(const struct delivery *d, const char *why, struct plan *p, struct rcpt *rc,
                 struct edits *edits, struct outcome *first_temp, struct outcome *o)
{
	const struct transport_conf *tc = &d->conf->transport;
	struct rcpt_verdict *rv;
	struct submission s;
	struct policy_msg m;
	struct policy_facts facts = {NULL};
	bool *unauth = NULL;
	char summary[2048];
	size_t i;

	if (tc->unverified_route == UNVERIFIED_DEFER) {
		outcome_local(o, OUT_DEFER, "4.7.0",
		              "not sent: %s; held in the queue (transport { "
		              "unverified_route = defer })",
		              why);
		log_warnx("%s: %s", d->qid, o->line);
		return -1;
	}
	memset(&s, 0, sizeof(s));
	s.id.client = d->have_client ? &d->client : NULL;
	s.id.sasl_login = d->sasl;
	/* Only mail that came with no client address is local. */
	s.id.as = d->client_given && !d->have_client &&
	                  (d->client_text == NULL || d->client_text[0] == '\0')
	              ? tc->local_submitter
	              : NULL;
	s.env_sender = d->sender;
	s.rcpts = d->rcpts;
	s.n_rcpts = d->n_rcpts;
	hdrset_view(&d->msg.hdr, &s.headers);
	rv = calloc(d->n_rcpts ? d->n_rcpts : 1, sizeof(*rv));
	if (rv == NULL) {
		outcome_local(o, OUT_DEFER, "4.3.0", "out of memory");
		return -1;
	}
	/* require_spf_pass, as the milter would have applied it: looked up
	 * here, for the rare message the milter's route does not cover. */
	if (d->conf->milter.require_spf_pass && d->conf->n_domains > 0) {
		unauth = calloc(d->conf->n_domains, sizeof(bool));
		if (unauth == NULL) {
			free(rv);
			outcome_local(o, OUT_DEFER, "4.3.0", "out of memory");
			return -1;
		}
		spfgate_check(d->conf, unauth, gate_log, (void *)d);
		facts.spf_unauthorized = unauth;
	}
	policy_evaluate(d->conf, &facts, &s, &m, rv, d->n_rcpts);
	free(unauth);
	policy_summary(&m, summary, sizeof(summary));
	log_info("%s: route not trusted: %s; decided by the policy: %s", d->qid, why, summary);
	if (m.submitter == NULL && !d->client_given) {
		/* Without -a, local mail and mail from an unknown client look
		 * the same: wait for the fix rather than bounce either. */
		free(rv);
		outcome_local(o, OUT_DEFER, "4.3.5",
		              "not sent: %s, and no submitter found without the client "
		              "address: add -a ${client_address} to the m365 line of "
		              "master.cf",
		              why);
		return -1;
	}
	if (m.reply.verdict != VERDICT_ACCEPT) {
		outcome_local(o, m.reply.verdict == VERDICT_TEMPFAIL ? OUT_DEFER : OUT_BOUNCE,
		              m.reply.xcode, "%s", m.reply.text);
		free(rv);
		return -1;
	}
	for (i = 0; i < d->n_rcpts; i++) {
		if (rv[i].reply.verdict == VERDICT_ACCEPT)
			continue;
		if (rv[i].reply.verdict == VERDICT_REJECT) {
			rc[i].state = R_FAILED;
			policy_line(&rv[i].reply, rc[i].reply, sizeof(rc[i].reply));
		} else {
			rc[i].state = R_TEMP;
			if (first_temp->line[0] == '\0')
				outcome_local(first_temp, OUT_DEFER, rv[i].reply.xcode, "%s",
				              rv[i].reply.text);
		}
		log_info("%s: to=<%s> refused by the policy: %s %s %s", d->qid, rc[i].addr,
		         rv[i].reply.code, rv[i].reply.xcode, rv[i].reply.text);
	}
	free(rv);
	p->mode = m.mode;
	p->domain = m.domain;
	p->tenant = m.tenant;
	p->mailbox = m.mailbox;
	p->connector = m.connector;
	policy_edits(&m, edits);
	p->sender = d->sender;
	for (i = 0; i < edits->n; i++)
		if (edits->e[i].op == EDIT_SENDER)
			p->sender = edits->sender;
	return 0;
}

static int
plan_endpoint(const struct delivery *d, struct plan *p, struct outcome *o)
{
	const struct tenant *t = p->tenant;

	switch (p->mode) {
	case MODE_SMTP_AUTH:
		if (p->mailbox == NULL) {
			outcome_local(o, OUT_DEFER, "4.3.5", "smtp-auth without a mailbox");
			return -1;
		}
		p->host = t->smtp_host;
		p->port = t->smtp_port;
		p->tls_required = p->tls_verify = true;
		return 0;
	case MODE_HVE:
		if (p->mailbox == NULL || !p->mailbox->hve) {
			outcome_local(o, OUT_DEFER, "4.3.5", "hve without an HVE account");
			return -1;
		}
		p->host = t->hve_host;
		p->port = t->hve_port;
		p->tls_required = p->tls_verify = true;
		return 0;
	case MODE_GRAPH:
		if (p->mailbox == NULL || p->mailbox->app == NULL || t->graph_endpoint == NULL) {
			outcome_local(o, OUT_DEFER, "4.3.5",
			              "graph needs a mailbox with an app and the tenant's "
			              "graph_endpoint");
			return -1;
		}
		/* "https://host[:port]" -> host, port for the log */
		snprintf(p->graph_host, sizeof(p->graph_host), "%.*s",
		         (int)strcspn(t->graph_endpoint + 8, ":/"), t->graph_endpoint + 8);
		p->host = p->graph_host;
		p->port = t->graph_endpoint[8 + strcspn(t->graph_endpoint + 8, ":/")] == ':'
		              ? (unsigned)atoi(t->graph_endpoint + 9 +
		                               strcspn(t->graph_endpoint + 8, ":/"))
		              : 443;
		p->tls_required = p->tls_verify = true;
		return 0;
	case MODE_RELAY:
	case MODE_DIRECT_SEND:
		if (t->mx_endpoint == NULL) {
			outcome_local(o, OUT_DEFER, "4.3.5", "tenant %s has no mx_endpoint for %s",
			              t->name, mode_name(p->mode));
			return -1;
		}
		p->host = t->mx_endpoint;
		p->port = t->mx_port;
		p->tls_required = p->tls_verify =
		    p->mode == MODE_RELAY || d->conf->transport.direct_send_tls == TLS_REQUIRED;
		return 0;
	case MODE_AUTO:
		break;
	}
	outcome_local(o, OUT_DEFER, "4.3.5", "no delivery mode");
	return -1;
}

int
plan_delivery(struct delivery *d, struct plan *p, struct rcpt *rc, struct outcome *first_temp,
              bool *by_policy, struct outcome *o)
{
	struct route r;
	char why[300];
	struct msg_err me;
	bool trusted = trusted_route(d, &r, why, sizeof(why));

	*by_policy = false;
	if ((trusted ? plan_from_route(d, &r, p, o)
	             : plan_from_policy(d, why, p, rc, &p->edits, first_temp, o)) < 0)
		return -1;
	*by_policy = !trusted; /* decided by the policy: the outcome line says so */
	if (plan_endpoint(d, p, o) < 0)
		return -1;
	if (message_wire(&d->msg, trusted ? NULL : &p->edits, &me) < 0) {
		outcome_local(o, OUT_DEFER, "4.3.0", "%s", me.msg);
		return -1;
	}
	return 0;
}
