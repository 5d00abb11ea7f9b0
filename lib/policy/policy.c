/*
 * policy.c - the pure verdict engine (see policy.h for the rules).
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "policy.h"
#include "route.h"
#include "util/util.h"

/* The exact words Exchange Online uses for a Send As refusal. */
#define SEND_AS_TEXT "SMTP; Client does not have permissions to send as this sender"

static void set_reply(struct reply *r, enum verdict v, const char *code, const char *xcode,
                      enum reason reason, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static void
set_reply(struct reply *r, enum verdict v, const char *code, const char *xcode, enum reason reason,
          const char *fmt, ...)
{
	va_list ap;

	r->verdict = v;
	m3_strlcpy(r->code, code, sizeof(r->code));
	m3_strlcpy(r->xcode, xcode, sizeof(r->xcode));
	r->reason = reason;
	va_start(ap, fmt);
	vsnprintf(r->text, sizeof(r->text), fmt, ap);
	va_end(ap);
}

static void
accept_reply(struct reply *r, enum reason reason)
{
	memset(r, 0, sizeof(*r));
	r->verdict = VERDICT_ACCEPT;
	r->reason = reason;
}

static const char *const reason_names[] = {
#define M3_REASON_NAME(e, s) s,
    M3_REASONS(M3_REASON_NAME)
#undef M3_REASON_NAME
};

const char *
verdict_name(enum verdict v)
{
	static const char *const names[VERDICT_COUNT] = {"accept", "reject", "tempfail", "none"};

	return (unsigned)v < VERDICT_COUNT ? names[v] : "?";
}

const char *
reason_name(enum reason r)
{
	return (unsigned)r < REASON_COUNT ? reason_names[r] : "?";
}

/* Step 1 ------------------------------------------------------------------------ */

const struct submitter *
policy_find_submitter(const struct conf *conf, const struct identity *id)
{
	const struct submitter *s;

	/* An authenticated login is the strongest claim, then a certificate. */
	if (id->sasl_login != NULL && id->sasl_login[0] != '\0' &&
	    (s = conf_submitter_login(conf, id->sasl_login)) != NULL)
		return s;
	if (id->cert_subject != NULL && id->cert_subject[0] != '\0' &&
	    (s = conf_submitter_subject(conf, id->cert_subject)) != NULL)
		return s;
	if (id->client == NULL)
		return id->as;
	/* The most specific block wins, as in a routing table. */
	s = conf_submitter_client(conf, id->client);
	return s != NULL ? s : id->as;
}

static bool
match_any(const char *const *patterns, size_t n, const struct addr *a)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (addr_match(patterns[i], a))
			return true;
	return false;
}

static bool
is_internal(const struct tenant *t, const char *domain)
{
	size_t i;

	for (i = 0; t != NULL && i < t->n_accepted; i++)
		if (domain_match(t->accepted[i], domain))
			return true;
	return false;
}

static bool
mailbox_may_send_as(const struct mailbox_conf *mb, const struct addr *a)
{
	return addr_equal(&mb->addr, a) || match_any(mb->send_as, mb->n_send_as, a);
}

/* Steps 1 and 2 ------------------------------------------------------------------- */

void
policy_mail(const struct conf *conf, const struct identity *id, const char *env_sender,
            struct policy_msg *m)
{
	struct addr_err e;
	const struct submitter *s;

	memset(m, 0, sizeof(*m));
	if (id->client != NULL)
		ip_format(id->client, m->client_text, sizeof(m->client_text));
	else
		m3_strlcpy(m->client_text, "unknown", sizeof(m->client_text));

	if (env_sender == NULL)
		env_sender = "";
	if (addr_parse_path(env_sender, strlen(env_sender), true, &m->env_sender, &e) < 0) {
		memset(&m->env_sender, 0, sizeof(m->env_sender));
		m->sender_unparseable = true;
	} else if (addr_is_null(&m->env_sender)) {
		m->sender_null = true;
	}

	s = policy_find_submitter(conf, id);
	if (s == NULL) {
		set_reply(&m->reply, VERDICT_REJECT, "550", "5.7.1", REASON_UNKNOWN_SUBMITTER,
		          "Client [%s]%s%s is not allowed to send through this "
		          "gateway",
		          m->client_text, id->sasl_login && *id->sasl_login ? " login " : "",
		          id->sasl_login && *id->sasl_login ? id->sasl_login : "");
		return;
	}
	m->submitter = s;
	m->domain = s->domain;
	m->tenant = s->domain ? s->domain->tenant : NULL;
	if (m->domain == NULL || m->tenant == NULL) {
		/* conf_load() refuses this; kept as a defined answer. */
		set_reply(&m->reply, VERDICT_TEMPFAIL, "451", "4.3.5", REASON_CONFIG_INCOMPLETE,
		          "Gateway configuration incomplete for this client");
		return;
	}

	if (m->sender_null) {
		m->final_sender = m->env_sender; /* <> is never rewritten */
	} else if (!m->sender_unparseable && is_internal(m->tenant, m->env_sender.domain) &&
	           match_any(s->envelope_senders, s->n_envelope_senders, &m->env_sender)) {
		m->final_sender = m->env_sender;
	} else {
		m->final_sender = m->domain->default_sender;
		m->sender_rewritten = true;
	}
	accept_reply(&m->reply, m->sender_rewritten ? REASON_SENDER_REWRITTEN : REASON_OK);
}

/* Step 3 ------------------------------------------------------------------------- */

/* configured_mailbox - the submitter's mailbox, else the domain's */
static const struct mailbox_conf *
configured_mailbox(const struct policy_msg *m)
{
	if (m->submitter->mailbox != NULL)
		return m->submitter->mailbox;
	return m->domain->mailbox;
}

void
policy_rcpt(const struct conf *conf, struct policy_msg *m, const char *rcpt,
            struct rcpt_verdict *rv)
{
	const struct domain_policy *d = m->domain;
	struct addr_err e;
	char a[ADDR_TEXT_MAX + 1];

	memset(rv, 0, sizeof(*rv));
	if (m->reply.verdict != VERDICT_ACCEPT || d == NULL) {
		rv->reply = m->reply;
		return;
	}
	if (addr_parse_path(rcpt, strlen(rcpt), false, &rv->addr, &e) < 0) {
		set_reply(&rv->reply, VERDICT_REJECT, "501", "5.1.3", REASON_RCPT_SYNTAX,
		          "Bad recipient address syntax: %s", e.msg);
		m->n_refused++;
		return;
	}
	addr_format(&rv->addr, a, sizeof(a));
	rv->internal = is_internal(m->tenant, rv->addr.domain);
	if (!rv->internal) {
		const struct mailbox_conf *mb = configured_mailbox(m);
		/* An HVE account reaches internal recipients only: is it the
		 * way an external recipient would go (choose_mode's order)? */
		bool hve = d->mode == MODE_HVE ||
		           ((d->mode == MODE_SMTP_AUTH || d->mode == MODE_GRAPH) && mb != NULL &&
		            mb->hve) ||
		           (d->mode == MODE_AUTO && mb != NULL && mb->hve &&
		            (m->submitter->mailbox != NULL || d->connector == NULL));
		bool can_leave =
		    !hve &&
		    (d->mode == MODE_SMTP_AUTH || d->mode == MODE_GRAPH || d->mode == MODE_RELAY ||
		     (d->mode == MODE_AUTO && (d->connector != NULL || mb != NULL)));
		if (hve) {
			set_reply(&rv->reply, VERDICT_REJECT, "550", "5.7.54", REASON_HVE_EXTERNAL,
			          "High Volume Email can only reach the organisation's own "
			          "mailboxes; <%s> is outside %s",
			          a, d->name);
			m->n_refused++;
			return;
		}
		if (!can_leave) {
			if (d->mode == MODE_DIRECT_SEND || m->tenant->direct_send)
				set_reply(&rv->reply, VERDICT_REJECT, "550", "5.7.54",
				          REASON_DIRECT_SEND_EXTERNAL,
				          "Direct Send can only reach the "
				          "organisation's own mailboxes; <%s> "
				          "is outside %s",
				          a, d->name);
			else
				set_reply(&rv->reply, VERDICT_REJECT, "550", "5.7.54",
				          REASON_NO_EXTERNAL_ROUTE,
				          "No mailbox or connector is configured "
				          "to send outside %s; <%s> is external",
				          d->name, a);
			m->n_refused++;
			return;
		}
	}
	/* More recipients than one message may have: 452 for the excess (the
	 * device sends them in another message).  Not Microsoft's limit per
	 * submission: Postfix splits the delivery, the transport keeps each
	 * part within the mailbox's recipients_per_message. */
	if (m->n_internal + m->n_external >= conf->milter.max_recipients) {
		set_reply(&rv->reply, VERDICT_TEMPFAIL, "452", "4.5.3",
		          REASON_RECIPIENTS_PER_MESSAGE,
		          "Too many recipients: this gateway takes %u per message; send the "
		          "rest in another message",
		          conf->milter.max_recipients);
		m->n_refused++;
		return;
	}
	accept_reply(&rv->reply, rv->internal ? REASON_INTERNAL : REASON_EXTERNAL);
	if (rv->internal)
		m->n_internal++;
	else
		m->n_external++;
}

/* Steps 4 and 5 ------------------------------------------------------------------- */

static void
choose_mode(struct policy_msg *m)
{
	const struct domain_policy *d = m->domain;

	m->mode = d->mode;
	m->mode_chosen = true;
	if (m->mode == MODE_AUTO) {
		/* A submitter given its own mailbox sends as that mailbox
		 * (eom_mailbox() then lets the mailbox pick the protocol). */
		if (m->submitter->mailbox != NULL)
			m->mode = MODE_SMTP_AUTH;
		else if (m->n_external == 0 && m->tenant->direct_send)
			m->mode = MODE_DIRECT_SEND;
		else if (d->connector != NULL)
			m->mode = MODE_RELAY;
		else if (configured_mailbox(m) != NULL)
			m->mode = MODE_SMTP_AUTH;
		else
			m->mode = MODE_DIRECT_SEND; /* internal only; RCPT refused the rest */
	}
	if (m->mode == MODE_RELAY)
		m->connector = d->connector;
}

/*
 * choose_mailbox - for smtp-auth: the mailbox whose address is the final
 * From, when the gateway holds its credentials and the submitter may use it
 * (it then sends as itself); else the submitter's, else the domain's.
 */
static const struct mailbox_conf *
choose_mailbox(const struct conf *conf, const struct policy_msg *m, const struct addr *from)
{
	const struct mailbox_conf *mb = conf_mailbox(conf, from);

	/* Not one that could not carry this message: an HVE account for
	 * external recipients, or not an HVE account where hve is pinned. */
	if (mb != NULL && mb->tenant == m->tenant && !(mb->hve && m->n_external > 0) &&
	    (m->domain->mode != MODE_HVE || mb->hve))
		return mb;
	return configured_mailbox(m);
}

/* mailbox_protocol - how a message sent as mb goes: hve, graph or smtp-auth */
static enum mode
mailbox_protocol(const struct domain_policy *d, const struct mailbox_conf *mb)
{
	if (mb->hve)
		return MODE_HVE;
	if (d->mode == MODE_GRAPH || !mb->smtp_auth)
		return MODE_GRAPH;
	return MODE_SMTP_AUTH;
}

/* send_as_denied, bad_header - the refusal in m's reply; -1 */
static int
send_as_denied(struct policy_msg *m, enum reason reason)
{
	set_reply(&m->reply, VERDICT_REJECT, "550", "5.7.60", reason, "%s", SEND_AS_TEXT);
	return -1;
}

static int
bad_header(struct policy_msg *m, enum reason reason, const char *text)
{
	set_reply(&m->reply, VERDICT_REJECT, "550", "5.6.0", reason, "%s", text);
	return -1;
}

/*
 * parse_one_author - a From or Sender value holding exactly one mailbox.
 * Returns 1 with *mb set, 0 if it holds no address, -1 if it holds several,
 * -2 if it cannot be parsed (err set).
 */
static int
parse_one_author(const char *value, struct mailbox *mb, struct addr_err *err)
{
	struct mailbox list[2];
	size_t n;

	if (addr_parse_list(value, strlen(value), list, NELEM(list), &n, err) < 0)
		return err->code == ADDR_ETOOMANY ? -1 : -2;
	if (n == 0)
		return 0;
	if (n > 1)
		return -1;
	*mb = list[0];
	return 1;
}

/* eom_from - step 4, the From header: kept, rewritten or added, or refused; -1 if refused */
static int
eom_from(struct policy_msg *m, const struct msg_headers *h, struct mailbox *from)
{
	const struct domain_policy *d = m->domain;
	const struct submitter *s = m->submitter;
	struct addr_err e;
	int r;

	memset(from, 0, sizeof(*from));
	if (h->n_from > 1)
		return bad_header(m, REASON_SEVERAL_FROM, "Message has several From headers");
	r = h->n_from == 1 ? parse_one_author(h->from[0], from, &e) : 0;
	if (r == -1)
		return bad_header(m, REASON_FROM_SEVERAL_ADDRESSES,
		                  "The From header holds several addresses; send one");
	if (r == 1) {
		m->from = from->addr;
		if (match_any(s->send_as, s->n_send_as, &from->addr) ||
		    (d->rewrite_header_from && addr_equal(&from->addr, &d->default_sender)))
			/* The second: what this policy itself writes there. */
			m->from_action = FROM_KEEP;
		else if (d->rewrite_header_from && !is_internal(m->tenant, from->addr.domain))
			m->from_action = FROM_REWRITE;
		else
			return send_as_denied(m, REASON_SEND_AS_DENIED);
	} else if (d->rewrite_header_from) {
		/* No usable From: give the message the domain's own. */
		m->from_action = h->n_from == 0 ? FROM_ADD : FROM_REWRITE;
	} else if (h->n_from == 0) {
		return bad_header(m, REASON_NO_FROM, "Message has no From header");
	} else {
		set_reply(&m->reply, VERDICT_REJECT, "550", "5.6.0", REASON_FROM_SYNTAX,
		          "The From header cannot be parsed: %s",
		          r == 0 ? "it holds no address" : e.msg);
		return -1;
	}
	return 0;
}

/* eom_sender - step 4, the Sender header next to the From kept (have: one to check
 * against the mailbox), or the headers a replaced From needs; -1 if refused */
static int
eom_sender(struct policy_msg *m, const struct msg_headers *h, const struct mailbox *from,
           struct mailbox *sender, bool *have)
{
	const struct domain_policy *d = m->domain;
	struct addr_err e;

	*have = false;
	if (m->from_action != FROM_KEEP) {
		addr_format_mailbox(from->display, &d->default_sender, m->new_from,
		                    sizeof(m->new_from));
		if (m->from_action == FROM_REWRITE && h->n_reply_to == 0 &&
		    !addr_is_null(&from->addr))
			addr_format_mailbox(from->display, &from->addr, m->new_reply_to,
			                    sizeof(m->new_reply_to));
		/* A Sender next to a From we replaced would contradict it. */
		m->delete_sender = h->n_sender > 0;
		return 0;
	}
	if (h->n_sender > 1)
		return bad_header(m, REASON_SEVERAL_SENDER, "Message has several Sender headers");
	if (h->n_sender == 0)
		return 0;
	if (parse_one_author(h->sender[0], sender, &e) != 1)
		return bad_header(m, REASON_SENDER_SYNTAX,
		                  "The Sender header must hold one address");
	if (!match_any(m->submitter->send_as, m->submitter->n_send_as, &sender->addr))
		return send_as_denied(m, REASON_SEND_AS_DENIED);
	*have = true;
	return 0;
}

/*
 * eom_spf - require_spf_pass: mail the gateway itself sends (direct-send,
 * relay) under a rewritten address of a domain whose SPF does not list the
 * gateway would land in junk.  Auto mode falls back to a mailbox;
 * otherwise the device retries later (tempfail), nothing is lost.
 */
static int
eom_spf(const struct conf *conf, const struct policy_facts *facts, struct policy_msg *m)
{
	const struct domain_policy *d = m->domain;

	if ((m->mode != MODE_DIRECT_SEND && m->mode != MODE_RELAY) || facts == NULL ||
	    facts->spf_unauthorized == NULL || !facts->spf_unauthorized[d - conf->domains] ||
	    (!m->sender_rewritten && m->from_action == FROM_KEEP))
		return 0;
	if (d->mode == MODE_AUTO && configured_mailbox(m) != NULL) {
		m->mode = MODE_SMTP_AUTH;
		m->connector = NULL;
		return 0;
	}
	set_reply(&m->reply, VERDICT_TEMPFAIL, "451", "4.7.0", REASON_SPF_NOT_AUTHORIZED,
	          "SPF for %s does not authorize this gateway (%s); mail for it "
	          "waits until the record is fixed (m365ctl doctor)",
	          d->default_sender.domain,
	          m->tenant->egress_ip ? m->tenant->egress_ip : "egress_ip");
	return -1;
}

/* eom_mailbox - step 5 for smtp-auth: the mailbox must agree too; -1 if refused */
static int
eom_mailbox(const struct conf *conf, struct policy_msg *m, const struct addr *final_from,
            const struct addr *sender)
{
	const struct mailbox_conf *mb = choose_mailbox(conf, m, final_from);

	if (mb == NULL) {
		/* conf_load() refuses a pinned smtp-auth without one. */
		set_reply(&m->reply, VERDICT_TEMPFAIL, "451", "4.3.5", REASON_CONFIG_INCOMPLETE,
		          "No mailbox configured for %s", m->domain->name);
		return -1;
	}
	m->mailbox = mb;
	m->mode = mailbox_protocol(m->domain, mb);
	if (m->mode == MODE_GRAPH && mb->auth != AUTH_OAUTH) {
		set_reply(&m->reply, VERDICT_TEMPFAIL, "451", "4.3.5", REASON_CONFIG_INCOMPLETE,
		          "Mailbox %s uses Basic authentication and cannot send through Graph "
		          "(domain %s: mode graph); give it an app",
		          mb->name, m->domain->name);
		return -1;
	}
	/* A sender the policy rewrote goes out as the default sender, or as
	 * the mailbox itself if it may not use that one. */
	if (m->sender_rewritten && !mailbox_may_send_as(mb, &m->final_sender))
		m->final_sender = mb->addr;
	if (!mailbox_may_send_as(mb, final_from) ||
	    (sender != NULL && !mailbox_may_send_as(mb, sender)) ||
	    (!m->sender_null && !mailbox_may_send_as(mb, &m->final_sender)))
		return send_as_denied(m, REASON_SEND_AS_DENIED_MAILBOX);
	return 0;
}

void
policy_eom(const struct conf *conf, const struct policy_facts *facts, struct policy_msg *m,
           const struct msg_headers *h)
{
	struct mailbox from, sender;
	struct addr final_from;
	bool have_sender;

	if (m->reply.verdict != VERDICT_ACCEPT || m->domain == NULL)
		return;
	choose_mode(m);
	/* Step 4: the author. */
	if (eom_from(m, h, &from) < 0 || eom_sender(m, h, &from, &sender, &have_sender) < 0)
		return;
	final_from = m->from_action == FROM_KEEP ? from.addr : m->domain->default_sender;
	if (eom_spf(conf, facts, m) < 0)
		return;
	/* Step 5 done above; for smtp-auth, the mailbox must agree too. */
	if (mode_has_mailbox(m->mode) &&
	    eom_mailbox(conf, m, &final_from, have_sender ? &sender.addr : NULL) < 0)
		return;
	accept_reply(&m->reply, REASON_OK);
}

void
policy_evaluate(const struct conf *conf, const struct policy_facts *facts,
                const struct submission *s, struct policy_msg *m, struct rcpt_verdict *rv,
                size_t cap)
{
	struct rcpt_verdict tmp;
	size_t i;

	policy_mail(conf, &s->id, s->env_sender, m);
	if (m->reply.verdict != VERDICT_ACCEPT)
		return;
	for (i = 0; i < s->n_rcpts; i++)
		policy_rcpt(conf, m, s->rcpts[i], i < cap ? &rv[i] : &tmp);
	if (m->n_internal + m->n_external == 0) {
		/* Every recipient was refused: the MTA never reaches DATA. */
		const struct reply *first = cap > 0 ? &rv[0].reply : &tmp.reply;
		m->reply = s->n_rcpts > 0 ? *first : m->reply;
		if (s->n_rcpts == 0)
			set_reply(&m->reply, VERDICT_REJECT, "554", "5.5.1", REASON_NO_RECIPIENTS,
			          "No valid recipients");
		return;
	}
	policy_eom(conf, facts, m, &s->headers);
}

/* The verdict as changes ----------------------------------------------------------- */

static void
add_edit(struct edits *e, enum edit_op op, const char *header, const char *value)
{
	if (e->n < EDITS_MAX) {
		e->e[e->n].op = op;
		e->e[e->n].header = header;
		e->e[e->n].value = value;
		e->n++;
	}
}

void
policy_edits(const struct policy_msg *m, struct edits *out)
{
	memset(out, 0, sizeof(*out));
	/* A sender "rewritten" to itself (a second look at a message this
	 * policy already rewrote) is no change. */
	if (m->sender_rewritten && !addr_equal(&m->final_sender, &m->env_sender) &&
	    addr_format(&m->final_sender, out->sender, sizeof(out->sender)) >= 0)
		add_edit(out, EDIT_SENDER, NULL, out->sender);
	m3_strlcpy(out->from, m->new_from, sizeof(out->from));
	m3_strlcpy(out->reply_to, m->new_reply_to, sizeof(out->reply_to));
	if (m->from_action == FROM_REWRITE)
		add_edit(out, EDIT_HEADER_SET, "From", out->from);
	else if (m->from_action == FROM_ADD)
		add_edit(out, EDIT_HEADER_ADD, "From", out->from);
	if (out->reply_to[0] != '\0')
		add_edit(out, EDIT_HEADER_ADD, "Reply-To", out->reply_to);
	if (m->delete_sender)
		add_edit(out, EDIT_HEADER_DROP, "Sender", NULL);
	add_edit(out, EDIT_ROUTE, ROUTE_HEADER, NULL);
}

/* Presentation ----------------------------------------------------------------------- */

const char *
reply_format(const struct reply *r, char *buf, size_t size)
{
	if (r->verdict == VERDICT_ACCEPT)
		snprintf(buf, size, "accept");
	else
		snprintf(buf, size, "%s %s %s", r->code, r->xcode, r->text);
	return buf;
}

const char *
policy_summary(const struct policy_msg *m, char *buf, size_t size)
{
	char env[ADDR_TEXT_MAX + 1], fin[ADDR_TEXT_MAX + 1], from[ADDR_TEXT_MAX + 1];
	const char *from_act = m->from_action == FROM_REWRITE ? "rewrite"
	                       : m->from_action == FROM_ADD   ? "add"
	                                                      : "keep";

	if (m->sender_unparseable)
		m3_strlcpy(env, "(unparseable)", sizeof(env));
	else
		addr_format(&m->env_sender, env, sizeof(env));
	addr_format(&m->final_sender, fin, sizeof(fin));
	addr_format(&m->from, from, sizeof(from));
	snprintf(buf, size,
	         "client=[%s] submitter=%s sender=<%s>%s%s%s from=<%s> "
	         "from_action=%s mode=%s mailbox=%s connector=%s internal=%zu "
	         "external=%zu refused=%zu verdict=%s reason=%s",
	         m->client_text, m->submitter ? m->submitter->name : "-", env,
	         m->sender_rewritten ? " -> <" : "", m->sender_rewritten ? fin : "",
	         m->sender_rewritten ? ">" : "", from, from_act,
	         m->mode_chosen ? mode_name(m->mode) : "-", m->mailbox ? m->mailbox->name : "-",
	         m->connector ? m->connector->name : "-", m->n_internal, m->n_external,
	         m->n_refused, verdict_name(m->reply.verdict), reason_name(m->reply.reason));
	return buf;
}
