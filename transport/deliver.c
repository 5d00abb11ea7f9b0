/*
 * deliver.c - one delivery (see deliver.h).
 *
 * The order matters:
 *   1. the route (the milter's header, or the policy for mail that did not
 *      pass the milter);
 *   2. the journal: recipients already accepted by Microsoft in an earlier
 *      attempt are never sent again, recipients already refused for good
 *      are not retried;
 *   3. for SMTP AUTH, a session slot (at most `sessions` at once);
 *   4. connect, EHLO, STARTTLS, AUTH;
 *   5. for SMTP AUTH, the message and recipient windows, taken only now,
 *      with the session ready, so that the time counted is the time the
 *      message reaches Microsoft;
 *   6. the transaction; each recipient's outcome goes to the journal;
 *   7. the outcome: all done -> sent; any temporary -> defer (the journal
 *      makes the retry send only to those); all refused -> bounce; some
 *      delivered and some refused -> a report to the sender for the
 *      refused ones, and sent.
 * A message dropped after the final "." and before Microsoft's reply may
 * be delivered twice: RFC 5321 section 6.1 accepts that rather than risk
 * losing it (the retry cannot know it arrived).
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "deliver.h"
#include "util/log.h"
#include "net/oauth.h"
#include "policy/policy.h"
#include "net/spfgate.h"
#include "policy/route.h"
#include "net/smtp.h"
#include "store/store.h"
#include "util/util.h"

enum rstate { R_TODO, R_DONE, R_FAILED, R_TEMP };

struct rcpt {
	const char *addr;
	enum rstate state;
	char reply[JOURNAL_REPLY_MAX];
};

struct plan {
	enum mode mode;
	const struct tenant *tenant;
	const struct domain_policy *domain;
	const struct mailbox_conf *mailbox;
	const struct connector *connector;
	const char *host;
	unsigned port;
	bool tls_required, tls_verify;
	const char *sender; /* MAIL FROM */
};

static void
sleep_ms(uint64_t ms)
{
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Step 1: the route ---------------------------------------------------------------- */

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

/* Step 4: the session -------------------------------------------------------------------- */

static int
read_password(const char *path, char *buf, size_t size)
{
	FILE *fp = fopen(path, "r");
	size_t n;

	if (fp == NULL)
		return -1;
	n = fread(buf, 1, size - 1, fp);
	fclose(fp);
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	return 0;
}

/* A reply that ends the session: record it as the outcome, log the hint. */
static int
refused(const struct delivery *d, const struct plan *p, const struct smtp_reply *r,
        const char *stage, struct outcome *o)
{
	const char *hint = reply_hint(r);

	outcome_reply(o, p->host, r);
	log_warnx("%s: %s refused at %s: %d %s", d->qid, p->host, stage, r->code, r->text);
	if (hint != NULL)
		log_warnx("%s: hint: %s", d->qid, hint);
	return -1;
}

/* A broken or silent connection: drop it at once (no QUIT to wait for). */
static int
net_failure(const struct delivery *d, struct smtp *s, const char *stage, struct outcome *o)
{
	outcome_local(o, OUT_DEFER, "4.4.2", "%s (during %s)", s->net.err, stage);
	log_warnx("%s: %s", d->qid, o->line);
	net_close(&s->net);
	return -1;
}

static int
session_open(const struct delivery *d, const struct plan *p, struct smtp *s, struct outcome *o)
{
	const struct conf *c = d->conf;
	struct tls_opts tls;
	struct smtp_reply r;

	if (smtp_open(s, p->host, p->port, &r) < 0)
		return net_failure(d, s, "connect", o);
	if (r.code != 220)
		return refused(d, p, &r, "greeting", o);
	if (smtp_ehlo(s, &r) < 0)
		return net_failure(d, s, "EHLO", o);
	if (r.code != 250)
		return refused(d, p, &r, "EHLO", o);
	if (!(s->ext & EXT_STARTTLS)) {
		if (p->tls_required) {
			outcome_local(o, OUT_DEFER, "4.7.10",
			              "%s does not offer STARTTLS, which %s requires", p->host,
			              mode_name(p->mode));
			return -1;
		}
		log_info("%s: %s offers no STARTTLS: sending in clear (direct_send_tls = "
		         "opportunistic)",
		         d->qid, p->host);
		return 0;
	}
	memset(&tls, 0, sizeof(tls));
	tls.ca_file = c->transport.ca_file;
	tls.verify = p->tls_verify;
	if (p->connector != NULL && p->connector->kind == CONNECTOR_CERTIFICATE) {
		tls.cert_file = p->connector->certificate_file;
		tls.key_file = p->connector->key_file;
	}
	tls.cache_dir = c->state_dir; /* verified sessions only (net.h) */
	if (smtp_starttls(s, &tls, &r) < 0)
		return net_failure(d, s, "STARTTLS", o);
	if (r.code != 220)
		return refused(d, p, &r, "STARTTLS", o);
	if (!tls.verify)
		log_info("%s: TLS with %s: certificate not verified (direct_send_tls = "
		         "opportunistic); the session is not kept for resumption",
		         d->qid, p->host);
	if (smtp_ehlo(s, &r) < 0)
		return net_failure(d, s, "EHLO after STARTTLS", o);
	if (r.code != 250)
		return refused(d, p, &r, "EHLO", o);
	return 0;
}

static int
authenticate(const struct delivery *d, const struct plan *p, struct smtp *s, struct outcome *o)
{
	const struct mailbox_conf *mb = p->mailbox;
	struct smtp_reply r;

	if (mb->auth == AUTH_BASIC) {
		char pw[1024];
		log_warnx("%s: mailbox %s uses Basic authentication, which Microsoft "
		          "turns off by default at the end of 2026; configure an app",
		          d->qid, mb->name);
		if (read_password(mb->password_file, pw, sizeof(pw)) < 0) {
			outcome_local(o, OUT_DEFER, "4.3.5", "password_file %s: %s",
			              mb->password_file, strerror(errno));
			return -1;
		}
		if (smtp_auth_login(s, mb->name, pw, &r) < 0) {
			memset(pw, 0, sizeof(pw));
			return net_failure(d, s, "AUTH", o);
		}
		memset(pw, 0, sizeof(pw));
	} else {
		struct oauth_token tok;
		struct oauth_err e;
		int tries;
		for (tries = 0; tries < 2; tries++) {
			if (oauth_get(d->conf, mb->app, tries ? tok.access : NULL, &tok, &e) < 0) {
				outcome_local(o, OUT_DEFER,
				              e.aadsts  ? "4.7.8"
				              : e.local ? "4.3.5"
				                        : "4.4.1",
				              "OAuth token for app %s: %s", mb->app->name, e.msg);
				log_warnx("%s: %s", d->qid, o->line);
				if (e.hint != NULL)
					log_warnx("%s: hint: AADSTS%ld: %s", d->qid, e.aadsts,
					          e.hint);
				return -1;
			}
			if (smtp_auth_xoauth2(s, mb->name, tok.access, &r) < 0)
				return net_failure(d, s, "AUTH", o);
			/* A token refused once: drop it, fetch another, try once more. */
			if (r.code == 535 && strcmp(r.xcode, "5.7.3") == 0 && !tok.fetched)
				continue;
			break;
		}
	}
	if (r.code != 235)
		return refused(d, p, &r, "AUTH", o);
	return 0;
}

/* Steps 3 and 5: pacing ------------------------------------------------------------------- */

static int
take_slot(const struct delivery *d, const struct plan *p, struct store *st, const struct holder *me,
          struct outcome *o)
{
	uint64_t deadline = store_now() + (uint64_t)d->conf->transport.pacing_wait * 1000;
	struct store_err e;
	int rc;

	for (;;) {
		rc = store_slot_take(st, p->mailbox->name, p->mailbox->sessions, me, &e);
		if (rc == STORE_OK)
			return 0;
		if (rc == STORE_FAIL) {
			outcome_local(o, OUT_DEFER, "4.3.0", "state store: %s", e.msg);
			return -1;
		}
		if (store_now() >= deadline) {
			outcome_local(o, OUT_DEFER, "4.7.0",
			              "%s has its %u sessions in use; deferred after %ds",
			              p->mailbox->name, p->mailbox->sessions,
			              d->conf->transport.pacing_wait);
			return -1;
		}
		sleep_ms(50 + (uint64_t)(random() % 150));
	}
}

/* release - give back a message place taken for nothing sent (a stamp of 0
 * leaves the window at once) */
static void
release(struct store *st, const struct mailbox_conf *mb, uint64_t *admitted)
{
	struct store_err e;

	if (*admitted != 0 &&
	    store_msg_retime(st, "out", mb->name, mb->messages.count, *admitted, 0, &e) < 0)
		log_warnx("state store: %s (a message place stays taken until it expires)", e.msg);
	*admitted = 0;
}

static int
take_windows(const struct delivery *d, const struct plan *p, struct store *st, uint64_t k,
             uint64_t *admitted, struct outcome *o)
{
	const struct mailbox_conf *mb = p->mailbox;
	uint64_t deadline = store_now() + (uint64_t)d->conf->transport.pacing_wait * 1000;
	struct store_err e;
	uint64_t free_at, now;
	char when[32], lim[32];
	int rc;

	/*
	 * The stamp holds the message's place while it is in flight: it is
	 * taken hold_ms ahead (longer than the transfer can take: every stage
	 * at its timeout), so it counts in every window until it is moved to
	 * when the message has gone (store_msg_retime, after the transaction)
	 * or released.  Counted from then, the window at Microsoft never holds
	 * more than the limit, however long the message took to get there.
	 * "After" to the millisecond: the store's clock is truncated to ms and
	 * Microsoft counted the message before its 250 reached us, so the
	 * final stamp is the truncated now + 1.
	 */
	const struct transport_conf *tc = &d->conf->transport;
	uint64_t hold_ms = (uint64_t)(tc->timeout_command + tc->timeout_data + tc->timeout_block +
	                              tc->timeout_dot) *
	                   1000;
	uint64_t window_ms = mb->messages.window * 1000;
	for (;;) {
		now = store_now();
		rc = store_msg_hold(st, "out", mb->name, mb->messages.count, window_ms, now,
		                    hold_ms, &free_at, &e);
		if (rc == STORE_FAIL) {
			outcome_local(o, OUT_DEFER, "4.3.0", "state store: %s", e.msg);
			return -1;
		}
		if (rc == STORE_OK) {
			/* The stamp recorded: the one to retime or release. */
			*admitted = free_at;
			break;
		}
		if (free_at > deadline) {
			outcome_local(o, OUT_DEFER, "4.7.0",
			              "%s reached %s messages; next slot at %s", mb->name,
			              limit_format(&mb->messages, lim, sizeof(lim)),
			              m3_utc_hms(free_at, when, sizeof(when)));
			return -1;
		}
		sleep_ms(free_at > now ? free_at - now : 1);
	}
	rc = store_rcpt_take(st, "out", mb->name, &mb->recipients, k, store_now(), &free_at, &e);
	if (rc != STORE_OK)
		release(st, mb, admitted); /* nothing will be sent */
	if (rc == STORE_FAIL) {
		outcome_local(o, OUT_DEFER, "4.3.0", "state store: %s", e.msg);
		return -1;
	}
	if (rc == STORE_FULL) {
		outcome_local(o, OUT_DEFER, "4.7.0",
		              "%s reached %s recipients; %llu more fit from %s", mb->name,
		              limit_format(&mb->recipients, lim, sizeof(lim)),
		              (unsigned long long)k,
		              free_at == UINT64_MAX ? "never (more than the limit in one message)"
		                                    : m3_utc_hms(free_at, when, sizeof(when)));
		return -1;
	}
	return 0;
}

/* Step 7: the outcome ------------------------------------------------------------------------ */

/*
 * sent_line - what Postfix logs for a delivery ("delivered via m365
 * service (...)"): Microsoft's own reply when this attempt's transaction
 * delivered every recipient (what an administrator greps for, as with
 * smtp(8)); otherwise our count, with Microsoft's last reply after it.
 */
static void
sent_line(struct outcome *o, const struct smtp_reply *ok, size_t n_now, size_t n_done,
          size_t n_failed)
{
	if (ok != NULL && n_now == n_done && n_failed == 0) {
		o->kind = OUT_SENT;
		snprintf(o->line, sizeof(o->line), "%d %s", ok->code, ok->text);
		return;
	}
	if (n_failed == 0)
		outcome_local(o, OUT_SENT, "2.0.0", "delivered to %zu recipient(s)", n_done);
	else
		outcome_local(o, OUT_SENT, "2.0.0",
		              "delivered to %zu recipient(s), %zu refused (reported)", n_done,
		              n_failed);
	if (ok != NULL) {
		char last[1100];
		snprintf(last, sizeof(last), ": %d %s", ok->code, ok->text);
		m3_strlcat(o->line, last, sizeof(o->line));
	}
}

/*
 * journal_done - the delivery is over: its journal entry goes.  If the
 * store cannot take the write now (an LMDB map full, Redis down), it is
 * tried once more, then left to expire on its own (JOURNAL_TTL_MS) and
 * said in the log: the mail is not concerned, Postfix is done with this
 * queue id, but a silent leftover looks like a leak.
 */
static void
journal_done(struct store *st, const char *qid)
{
	struct store_err e = {0};

	if (st == NULL || store_journal_drop(st, qid, &e) == STORE_OK)
		return;
	usleep(200 * 1000);
	if (store_journal_drop(st, qid, &e) == STORE_OK)
		return;
	log_warnx("%s: journal: entry kept, it expires by itself within 7 days: %s", qid, e.msg);
}

static void
finish(struct delivery *d, struct rcpt *rc, struct store *st, struct outcome *o,
       const struct outcome *first_temp, const struct smtp_reply *ok, size_t n_now)
{
	const char **failed = NULL, **replies = NULL;
	size_t i, n_done = 0, n_failed = 0, n_temp = 0;
	char err[256];

	for (i = 0; i < d->n_rcpts; i++) {
		n_done += rc[i].state == R_DONE;
		n_failed += rc[i].state == R_FAILED;
		n_temp += rc[i].state == R_TEMP || rc[i].state == R_TODO;
	}
	if (n_temp > 0) {
		if (first_temp->line[0] != '\0')
			*o = *first_temp;
		else
			outcome_local(o, OUT_DEFER, "4.0.0", "%zu recipient(s) not yet delivered",
			              n_temp);
		o->kind = OUT_DEFER;
		return;
	}
	if (n_failed == 0) {
		sent_line(o, ok, n_now, n_done, 0);
		journal_done(st, d->qid);
		return;
	}
	if (n_done == 0) {
		/* Every recipient refused: Postfix bounces them all, with the reply. */
		for (i = 0; i < d->n_rcpts; i++)
			if (rc[i].state == R_FAILED) {
				outcome_local(o, OUT_BOUNCE, "5.0.0", "%s", rc[i].reply);
				/* The reply line starts with the status already. */
				m3_strlcpy(o->line, rc[i].reply, sizeof(o->line));
				break;
			}
		journal_done(st, d->qid);
		return;
	}
	/* Mixed: report the refused ones ourselves, then tell Postfix "sent". */
	failed = calloc(n_failed, sizeof(*failed));
	replies = calloc(n_failed, sizeof(*replies));
	if (failed == NULL || replies == NULL) {
		outcome_local(o, OUT_DEFER, "4.3.0", "out of memory");
		goto out;
	}
	n_failed = 0;
	for (i = 0; i < d->n_rcpts; i++)
		if (rc[i].state == R_FAILED) {
			failed[n_failed] = rc[i].addr;
			replies[n_failed++] = rc[i].reply;
		}
	if (d->sender[0] == '\0') {
		log_info("%s: %zu recipient(s) refused; no report (null sender)", d->qid, n_failed);
	} else if (dsn_send(d, failed, replies, n_failed, err, sizeof(err)) < 0) {
		/* The journal keeps the outcomes: the retry only sends the report. */
		outcome_local(o, OUT_DEFER, "4.3.0", "cannot send the delivery report: %s", err);
		goto out;
	} else {
		log_info("%s: %zu delivered, %zu refused: report sent to <%s>", d->qid, n_done,
		         n_failed, d->sender);
	}
	sent_line(o, ok, n_now, n_done, n_failed);
	journal_done(st, d->qid);
out:
	free(failed);
	free(replies);
}

/* Everything -------------------------------------------------------------------------------- */

void
deliver(struct delivery *d, struct outcome *o)
{
	const struct conf *c = d->conf;
	struct outcome first_temp;
	struct store *st = NULL;
	struct store_err se;
	struct smtp s;
	struct plan p;
	struct holder me;
	struct rcpt *rc;
	const char **todo = NULL;
	struct smtp_reply *rr = NULL, final;
	struct edits edits;
	bool slot = false, by_policy = false;
	uint64_t admitted = 0;
	size_t i, n_todo = 0, n_now = 0;
	char line[1200];

	memset(o, 0, sizeof(*o));
	memset(&first_temp, 0, sizeof(first_temp));
	memset(&p, 0, sizeof(p));
	memset(&s, 0, sizeof(s));
	net_init(&s.net);
	rc = calloc(d->n_rcpts, sizeof(*rc));
	if (rc == NULL) {
		outcome_local(o, OUT_DEFER, "4.3.0", "out of memory");
		return;
	}
	for (i = 0; i < d->n_rcpts; i++)
		rc[i].addr = d->rcpts[i];

	{
		struct route r;
		char why[300], err[256];
		bool trusted = trusted_route(d, &r, why, sizeof(why));
		if ((trusted ? plan_from_route(d, &r, &p, o)
		             : plan_from_policy(d, why, &p, rc, &edits, &first_temp, o)) < 0)
			goto out;
		by_policy = !trusted;
		if (plan_endpoint(d, &p, o) < 0)
			goto out;
		if (message_wire(&d->msg, trusted ? NULL : &edits, err, sizeof(err)) < 0) {
			outcome_local(o, OUT_DEFER, "4.3.0", "%s", err);
			goto out;
		}
	}

	/* Step 2: the journal. */
	st = store_open(c, &se);
	if (st == NULL) {
		outcome_local(o, OUT_DEFER, "4.3.0", "state store: %s", se.msg);
		goto out;
	}
	for (i = 0; i < d->n_rcpts; i++) {
		enum journal_state js;
		if (rc[i].state != R_TODO)
			continue; /* refused by the policy */
		if (store_journal_get(st, d->qid, rc[i].addr, &js, rc[i].reply, sizeof(rc[i].reply),
		                      &se) < 0) {
			outcome_local(o, OUT_DEFER, "4.3.0", "state store: %s", se.msg);
			goto out;
		}
		if (js == JOURNAL_ACCEPTED) {
			rc[i].state = R_DONE;
			log_info("%s: to=<%s> already accepted in an earlier attempt: skipped",
			         d->qid, rc[i].addr);
		} else if (js == JOURNAL_FAILED) {
			rc[i].state = R_FAILED;
		}
	}
	todo = calloc(d->n_rcpts, sizeof(*todo));
	rr = calloc(d->n_rcpts, sizeof(*rr));
	if (todo == NULL || rr == NULL) {
		outcome_local(o, OUT_DEFER, "4.3.0", "out of memory");
		goto out;
	}
	for (i = 0; i < d->n_rcpts; i++)
		if (rc[i].state == R_TODO)
			todo[n_todo++] = rc[i].addr;
	if (n_todo == 0) {
		finish(d, rc, st, o, &first_temp, NULL, 0);
		goto out;
	}

	/* One submission holds at most the mailbox's recipients_per_message:
	 * Postfix splits deliveries (m365_destination_recipient_limit); one
	 * larger than that is a configuration to fix, and waits for it. */
	if (p.mode == MODE_SMTP_AUTH && n_todo > p.mailbox->recipients_per_message) {
		outcome_local(o, OUT_DEFER, "4.5.3",
		              "%zu recipients in one delivery, more than %s takes in one "
		              "message (%u): set m365_destination_recipient_limit to at most "
		              "that in Postfix's main.cf",
		              n_todo, p.mailbox->name, p.mailbox->recipients_per_message);
		goto out;
	}

	/* Step 3: a session slot for the mailbox. */
	if (p.mode == MODE_SMTP_AUTH) {
		store_self(&me, store_now());
		if (take_slot(d, &p, st, &me, o) < 0)
			goto out;
		slot = true;
	}

	/* Step 4: the session. */
	s.helo = c->transport.helo_name;
	s.t.connect = c->transport.timeout_connect;
	s.t.greeting = c->transport.timeout_greeting;
	s.t.command = c->transport.timeout_command;
	s.t.data = c->transport.timeout_data;
	s.t.block = c->transport.timeout_block;
	s.t.dot = c->transport.timeout_dot;
	if (session_open(d, &p, &s, o) < 0)
		goto out;
	if ((s.ext & EXT_SIZE) && s.size_limit > 0 && d->msg.size > s.size_limit) {
		outcome_local(o, OUT_BOUNCE, "5.3.4",
		              "message of %lu bytes is larger than %s accepts (%lu bytes)",
		              d->msg.size, p.host, s.size_limit);
		goto out;
	}
	if (p.mode == MODE_SMTP_AUTH && authenticate(d, &p, &s, o) < 0)
		goto out;

	/* Step 5: the windows, now that the message is about to go. */
	if (p.mode == MODE_SMTP_AUTH && take_windows(d, &p, st, n_todo, &admitted, o) < 0)
		goto out;

	/* Step 6: the transaction. */
	{
		struct smtp_msg m = {d->msg.wire, d->msg.wire_len, d->msg.size, d->msg.eightbit,
		                     d->msg.utf8_headers};
		int trc = smtp_transaction(&s, p.sender, todo, n_todo, &m, rr, &final);
		if (admitted != 0 &&
		    store_msg_retime(st, "out", p.mailbox->name, p.mailbox->messages.count,
		                     admitted, store_now() + 1, &se) < 0)
			log_warnx("%s: state store: %s", d->qid, se.msg);
		if (trc < 0) {
			net_failure(d, &s, "the mail transaction", &first_temp);
			for (i = 0; i < d->n_rcpts; i++)
				if (rc[i].state == R_TODO)
					rc[i].state = R_TEMP;
			finish(d, rc, st, o, &first_temp, NULL, 0);
			goto out;
		}
	}
	{
		size_t k = 0;
		for (i = 0; i < d->n_rcpts; i++) {
			struct smtp_reply *r;
			struct outcome ro;
			if (rc[i].state != R_TODO)
				continue;
			r = &rr[k++];
			/* Accepted at RCPT: the end of DATA decides. */
			if (reply_classify(r) == RC_OK)
				r = &final;
			outcome_reply(&ro, p.host, r);
			switch (reply_classify(r)) {
			case RC_OK:
				rc[i].state = R_DONE;
				n_now++;
				if (store_journal_put(st, d->qid, rc[i].addr, JOURNAL_ACCEPTED,
				                      r->text, store_now(), &se) < 0)
					log_warnx("%s: journal: %s (a retry could "
					          "send to <%s> again)",
					          d->qid, se.msg, rc[i].addr);
				break;
			case RC_PERM:
				rc[i].state = R_FAILED;
				m3_strlcpy(rc[i].reply, ro.line, sizeof(rc[i].reply));
				if (store_journal_put(st, d->qid, rc[i].addr, JOURNAL_FAILED,
				                      ro.line, store_now(), &se) < 0)
					log_warnx("%s: journal: %s", d->qid, se.msg);
				break;
			case RC_TEMP:
			case RC_CONFIG:
				rc[i].state = R_TEMP;
				if (first_temp.line[0] == '\0')
					first_temp = ro;
				break;
			}
			log_info("%s: to=<%s> relay=%s[%s]:%u mode=%s%s%s tls=%s%s "
			         "status=%s (%d %s)",
			         d->qid, rc[i].addr, p.host, s.net.peer, p.port, mode_name(p.mode),
			         p.mailbox ? " mailbox=" : "", p.mailbox ? p.mailbox->name : "",
			         s.net.tls_version ? s.net.tls_version : "none",
			         s.net.resumed ? " resumed" : "",
			         rc[i].state == R_DONE     ? "sent"
			         : rc[i].state == R_FAILED ? "bounced"
			                                   : "deferred",
			         r->code, r->text);
			if (rc[i].state != R_DONE && reply_hint(r) != NULL)
				log_warnx("%s: hint: %s", d->qid, reply_hint(r));
		}
	}
	smtp_quit(&s);
	finish(d, rc, st, o, &first_temp, final.code / 100 == 2 ? &final : NULL, n_now);
out:
	if (s.net.fd >= 0)
		smtp_quit(&s);
	if (slot) {
		if (store_slot_release(st, p.mailbox->name, &me, &se) < 0)
			log_warnx("%s: releasing the session slot: %s (it frees when "
			          "this process ends)",
			          d->qid, se.msg);
	}
	/*
	 * Postfix logs this line with the delivery (pipe(8) keeps about its
	 * first 100 bytes): say there that the policy, not the milter, routed
	 * the message, and why - first for a delivery (Microsoft's reply is
	 * also in our own log line), after the status for a deferral (whose
	 * line must start with it).
	 */
	if (by_policy && o->kind != OUT_BOUNCE && o->line[0] != '\0') {
		char note[128];
		snprintf(note, sizeof(note), "routed by the policy (%s)", d->untrusted);
		if (o->kind == OUT_SENT) {
			char rest[sizeof(o->line)];
			m3_strlcpy(rest, o->line, sizeof(rest));
			m3_strlcpy(o->line, note, sizeof(o->line));
			m3_strlcat(o->line, ": ", sizeof(o->line));
			m3_strlcat(o->line, rest, sizeof(o->line));
		} else {
			m3_strlcat(o->line, "; ", sizeof(o->line));
			m3_strlcat(o->line, note, sizeof(o->line));
		}
	}
	if (o->kind != OUT_SENT && o->line[0] != '\0') {
		snprintf(line, sizeof(line), "%s", o->line);
		log_info("%s: %s: %s", d->qid, o->kind == OUT_DEFER ? "deferred" : "bounced", line);
	}
	store_close(st);
	free(todo);
	free(rr);
	free(rc);
}
