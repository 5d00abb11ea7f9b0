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
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "deliver.h"
#include "graph.h"
#include "plan.h"
#include "pool.h"
#include "util/log.h"
#include "net/oauth.h"
#include "policy/policy.h"
#include "net/spfgate.h"
#include "policy/route.h"
#include "net/smtp.h"
#include "store/store.h"
#include "util/util.h"

/* Step 4: the session -------------------------------------------------------------------- */

/*
 * delivery_addr - parse an address from pipe(8)'s argv or an LMTP command,
 * write its canonical form into out
 * (ADDR_TEXT_MAX + 1 bytes); -1 with the outcome set if it does not parse.
 */
int
delivery_addr(const char *arg, bool is_sender, struct addr *a, char *out, struct outcome *o)
{
	struct addr_err e;
	char shown[120];

	if (addr_parse_path(arg, strlen(arg), is_sender, a, &e) < 0 ||
	    addr_format(a, out, ADDR_TEXT_MAX + 1) < 0) {
		outcome_local(o, OUT_DEFER, is_sender ? "4.1.7" : "4.1.3",
		              "%s address \"%s\" is not valid (%s at byte %zu); not sent",
		              is_sender ? "sender" : "recipient",
		              m3_printable(shown, arg, sizeof(shown)), e.msg, e.off);
		return -1;
	}
	return 0;
}

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

int
mailbox_token(const struct delivery *d, const struct mailbox_conf *mb, const char *scope,
              const char *rejected, struct oauth_token *tok, struct outcome *o)
{
	struct oauth_err e;

	if (oauth_get(d->conf, mb->app, scope, rejected, tok, &e) == 0)
		return 0;
	outcome_local(o, OUT_DEFER,
	              e.code == OAUTH_EREFUSED ? "4.7.8"
	              : e.code == OAUTH_ELOCAL ? "4.3.5"
	                                       : "4.4.1",
	              "OAuth token for app %s: %s", mb->app->name, e.msg);
	log_warnx("%s: %s", d->qid, o->line);
	if (e.hint != NULL)
		log_warnx("%s: hint: AADSTS%ld: %s", d->qid, e.aadsts, e.hint);
	return -1;
}

static int
authenticate(const struct delivery *d, const struct plan *p, struct smtp *s, struct outcome *o)
{
	const struct mailbox_conf *mb = p->mailbox;
	struct smtp_reply r;

	if (mb->auth == AUTH_BASIC) {
		char pw[1024];
		if (!mb->hve) /* High Volume Email keeps Basic */
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
		int tries;
		for (tries = 0; tries < 2; tries++) {
			if (mailbox_token(d, mb, mb->tenant->scope, tries ? tok.access : NULL, &tok,
			                  o) < 0)
				return -1;
			if (smtp_auth_xoauth2(s, mb->name, tok.access, &r) < 0)
				return net_failure(d, s, "AUTH", o);
			/* A token refused once: drop it, fetch another, try once more. */
			if (r.code == 535 && strcmp(r.xcode, "5.7.3") == 0 && !tok.fetched)
				continue;
			break;
		}
		memset(&tok, 0, sizeof(tok));
	}
	if (r.code != 235)
		return refused(d, p, &r, "AUTH", o);
	return 0;
}

/* Steps 3 and 5: pacing ------------------------------------------------------------------- */

int
take_slot(const struct delivery *d, const struct plan *p, struct store *st, const struct holder *me,
          struct outcome *o)
{
	uint64_t deadline = store_now() + (uint64_t)d->conf->transport.pacing_wait * 1000;
	struct store_err e;
	bool dropped = false;
	int rc;

	/* A process is one holder: a kept session of this mailbox (another
	 * mode or endpoint) holds the slot this one would get (pool.h). */
	if (d->pool != NULL)
		pool_drop_mailbox(d->pool, p->mailbox->name);
	for (;;) {
		rc = store_slot_take(st, p->mailbox->name, p->mailbox->sessions, me, &e);
		if (rc == STORE_OK)
			return 0;
		if (rc == STORE_FAIL) {
			outcome_local(o, OUT_DEFER, "4.3.0", "state store: %s", e.msg);
			return -1;
		}
		if (d->pool != NULL && !dropped) {
			/* Never wait holding idle slots: another process may be
			 * waiting for one of them (pool.h). */
			pool_drop_slots(d->pool);
			dropped = true;
			continue;
		}
		if (store_now() >= deadline) {
			outcome_local(o, OUT_DEFER, "4.7.0",
			              "%s has its %u sessions in use; deferred after %ds",
			              p->mailbox->name, p->mailbox->sessions,
			              d->conf->transport.pacing_wait);
			return -1;
		}
		m3_sleep_ms(50 + (uint64_t)(random() % 150));
	}
}

void
windows_went(const struct delivery *d, const struct plan *p, struct store *st,
             struct admission *adm, uint64_t when)
{
	const struct mailbox_conf *mb = p->mailbox;
	struct store_err e;

	if (adm->msg != 0 &&
	    store_msg_retime(st, "out", mb->name, mb->messages.count, adm->msg, when, &e) < 0)
		log_warnx("%s: state store: %s (a message place stays taken until it expires)",
		          d->qid, e.msg);
	if (adm->rcpt != 0 && store_rcpt_retime(st, "out", mb->name, &mb->recipients, adm->k,
	                                        adm->rcpt, when, &e) < 0)
		log_warnx(
		    "%s: state store: %s (%llu recipient places stay taken until they expire)",
		    d->qid, e.msg, (unsigned long long)adm->k);
	memset(adm, 0, sizeof(*adm));
}

int
take_windows(const struct delivery *d, const struct plan *p, struct store *st, uint64_t k,
             struct admission *adm, struct outcome *o)
{
	const struct mailbox_conf *mb = p->mailbox;
	uint64_t deadline = store_now() + (uint64_t)d->conf->transport.pacing_wait * 1000;
	struct store_err e;
	uint64_t free_at, now;
	char when[32], lim[32];
	int rc;

	/*
	 * The stamps hold the message's place and its recipients' while it is
	 * in flight: they are taken hold_ms ahead (longer than the transfer
	 * can take: every stage at its timeout), so they count in every window
	 * until they are moved to when the message has gone (windows_went,
	 * after the transaction) or released.  Counted from then, the windows
	 * at Microsoft never hold more than the limits, however long the
	 * message took to get there.
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
			adm->msg = free_at;
			break;
		}
		if (free_at > deadline) {
			outcome_local(o, OUT_DEFER, "4.7.0",
			              "%s reached %s messages; next slot at %s", mb->name,
			              limit_format(&mb->messages, lim, sizeof(lim)),
			              m3_utc_hms(free_at, when, sizeof(when)));
			return -1;
		}
		/* Not waiting with idle slots of other mailboxes held. */
		if (d->pool != NULL)
			pool_drop_slots(d->pool);
		m3_sleep_ms(free_at > now ? free_at - now : 1);
	}
	/* The recipients, waiting as for the message: with 10,000 a day a
	 * full window frees in hours (deferred), but recipients in flight
	 * free it as soon as they are retimed. */
	for (;;) {
		now = store_now();
		rc = store_rcpt_hold(st, "out", mb->name, &mb->recipients, k, now, hold_ms,
		                     &free_at, &e);
		if (rc == STORE_OK) {
			adm->rcpt = free_at;
			adm->k = k;
			/* Waited for the recipients: the message's hold counts
			 * from now, or it could run out while the message is
			 * still in flight. */
			if (now >= adm->msg - hold_ms + 1000 &&
			    store_msg_retime(st, "out", mb->name, mb->messages.count, adm->msg,
			                     now + hold_ms, &e) == STORE_OK)
				adm->msg = now + hold_ms;
			return 0;
		}
		if (rc == STORE_FAIL) {
			windows_went(d, p, st, adm, 0); /* nothing will be sent */
			outcome_local(o, OUT_DEFER, "4.3.0", "state store: %s", e.msg);
			return -1;
		}
		if (free_at > deadline) {
			windows_went(d, p, st, adm, 0);
			outcome_local(
			    o, OUT_DEFER, "4.7.0",
			    "%s reached %s recipients; %llu more fit from %s", mb->name,
			    limit_format(&mb->recipients, lim, sizeof(lim)), (unsigned long long)k,
			    free_at == UINT64_MAX ? "never (more than the limit in one message)"
			                          : m3_utc_hms(free_at, when, sizeof(when)));
			return -1;
		}
		if (d->pool != NULL)
			pool_drop_slots(d->pool);
		m3_sleep_ms(free_at > now ? free_at - now : 1);
	}
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
 * journal_key - d->jid: the queue id and a fingerprint of what is
 * delivered: 64 bits of SHA-256 over the envelope sender and the message
 * as Postfix hands it over, the same bytes on every retry of one queue
 * file (less an mbox "From " line, which carries the time of the attempt
 * when pipe(8) has flag F, or Sendmail a mailer without F=n).  Postfix's
 * short queue ids are an inode number and the time's microseconds, so one
 * comes back for another message: keyed by the queue id alone, an entry
 * left behind (a drop that failed, or one not yet made) would make that
 * message's recipients "accepted in an earlier attempt" - lost mail.
 * Keyed so, it is never found by another message, and the LMTP service
 * may drop finished entries in batches.
 */
static int
journal_key(struct delivery *d)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	int ok = c != NULL && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1 &&
	         EVP_DigestUpdate(c, d->sender, strlen(d->sender) + 1) == 1 &&
	         EVP_DigestUpdate(c, d->msg.raw + d->msg.head_off,
	                          d->msg.raw_len - d->msg.head_off) == 1 &&
	         EVP_DigestFinal_ex(c, md, NULL) == 1;

	EVP_MD_CTX_free(c);
	if (!ok)
		return -1;
	snprintf(d->jid, sizeof(d->jid), "%.32s.%02x%02x%02x%02x%02x%02x%02x%02x", d->qid, md[0],
	         md[1], md[2], md[3], md[4], md[5], md[6], md[7]);
	return 0;
}

/*
 * journal_done - the delivery is over: its journal entry goes.  If the
 * store cannot take the write now (an LMDB map full, Redis down), it is
 * tried once more, then left to expire on its own (JOURNAL_TTL_MS) and
 * said in the log: the mail is not concerned, Postfix is done with this
 * queue id, but a silent leftover looks like a leak.
 */
static void
journal_done(struct store *st, const struct delivery *d)
{
	struct store_err e = {0};
	struct journal_ref *refs;
	size_t i;
	int rc;

	if (st == NULL)
		return;
	/* This delivery's recipients only (store_journal_forget). */
	refs = calloc(d->n_rcpts ? d->n_rcpts : 1, sizeof(*refs));
	if (refs == NULL) {
		log_warnx("%s: journal: entry kept, it expires by itself within 7 days: "
		          "out of memory",
		          d->qid);
		return;
	}
	for (i = 0; i < d->n_rcpts; i++) {
		refs[i].qid = d->jid;
		refs[i].rcpt = d->rcpts[i];
	}
	rc = store_journal_forget(st, refs, d->n_rcpts, &e);
	if (rc != STORE_OK) {
		usleep(200 * 1000);
		rc = store_journal_forget(st, refs, d->n_rcpts, &e);
	}
	free(refs);
	if (rc == STORE_OK)
		return;
	log_warnx("%s: journal: entry kept, it expires by itself within 7 days: %s", d->qid, e.msg);
}

/*
 * finish_each - LMTP: every recipient its own outcome, as Postfix's lmtp(8)
 * takes them (a refused one bounces there, a deferred one is tried again
 * alone); the journal entry goes once none is left to try.
 */
static void
finish_each(struct delivery *d, struct rcpt *rc, struct store *st, struct outcome *o,
            const struct outcome *first_temp, const struct smtp_reply *ok, size_t n_temp)
{
	size_t i;

	for (i = 0; i < d->n_rcpts; i++) {
		struct outcome *r = &d->per_rcpt[i];
		if (rc[i].state == R_DONE && rc[i].reply[0] == '\0' && ok != NULL)
			snprintf(r->line, sizeof(r->line), "%d %s", ok->code, ok->text);
		else if (rc[i].state == R_DONE) /* the journal's, with Microsoft's reply */
			outcome_local(r, OUT_SENT, "2.0.0", "accepted in an earlier attempt: %s",
			              rc[i].reply);
		else if (rc[i].state == R_FAILED)
			m3_strlcpy(r->line, rc[i].reply, sizeof(r->line));
		else if (first_temp->line[0] != '\0')
			*r = *first_temp;
		else
			outcome_local(r, OUT_DEFER, "4.0.0", "not yet delivered");
		r->kind = rc[i].state == R_DONE     ? OUT_SENT
		          : rc[i].state == R_FAILED ? OUT_BOUNCE
		                                    : OUT_DEFER;
	}
	(void)st;
	if (n_temp > 0) {
		*o = *first_temp;
		o->kind = OUT_DEFER;
		return;
	}
	outcome_local(o, OUT_SENT, "2.0.0", "every recipient has its reply");
	/* Not dropped here: if the replies never reach Postfix (it gave up
	 * waiting), its retry must find what was accepted. */
	d->journal_drop_due = true;
}

/*
 * each_early - LMTP, a delivery that stopped before its outcome (a local
 * failure, a refusal of the session): the recipients the journal settled
 * keep their own answer, the others get the delivery's.
 */
static void
each_early(struct delivery *d, const struct rcpt *rc, const struct outcome *o)
{
	size_t i;

	for (i = 0; i < d->n_rcpts; i++) {
		struct outcome *r = &d->per_rcpt[i];
		if (r->line[0] != '\0')
			continue;
		if (rc != NULL && rc[i].state == R_DONE)
			outcome_local(r, OUT_SENT, "2.0.0", "accepted in an earlier attempt: %s",
			              rc[i].reply);
		else if (rc != NULL && rc[i].state == R_FAILED) {
			m3_strlcpy(r->line, rc[i].reply, sizeof(r->line));
			r->kind = OUT_BOUNCE;
		} else
			*r = *o;
	}
}

static void
finish(struct delivery *d, struct rcpt *rc, struct store *st, struct outcome *o,
       const struct outcome *first_temp, const struct smtp_reply *ok, size_t n_now)
{
	const char **failed = NULL, **replies = NULL;
	size_t i, n_done = 0, n_failed = 0, n_temp = 0;
	struct dsn_err de;

	for (i = 0; i < d->n_rcpts; i++) {
		n_done += rc[i].state == R_DONE;
		n_failed += rc[i].state == R_FAILED;
		n_temp += rc[i].state == R_TEMP || rc[i].state == R_TODO;
	}
	if (d->per_rcpt != NULL) {
		finish_each(d, rc, st, o, first_temp, ok, n_temp);
		return;
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
		journal_done(st, d);
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
		journal_done(st, d);
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
	} else if (dsn_send(d, failed, replies, n_failed, &de) < 0) {
		/* The journal keeps the outcomes: the retry only sends the report. */
		outcome_local(o, OUT_DEFER, "4.3.0", "cannot send the delivery report: %s", de.msg);
		goto out;
	} else {
		log_info("%s: %zu delivered, %zu refused: report sent to <%s>", d->qid, n_done,
		         n_failed, d->sender);
	}
	sent_line(o, ok, n_now, n_done, n_failed);
	journal_done(st, d);
out:
	free(failed);
	free(replies);
}

/* Everything -------------------------------------------------------------------------------- */

/* Step 2: recipients an earlier attempt settled are not sent to again. */
static int
journal_read(struct attempt *a, struct outcome *o)
{
	struct delivery *d = a->d;
	enum journal_state js;
	struct store_err se;
	size_t i;

	for (i = 0; i < d->n_rcpts; i++) {
		struct rcpt *r = &a->rc[i];
		if (r->state != R_TODO)
			continue; /* refused by the policy */
		if (store_journal_get(a->st, d->jid, r->addr, &js, r->reply, sizeof(r->reply),
		                      &se) < 0) {
			outcome_local(o, OUT_DEFER, "4.3.0", "state store: %s", se.msg);
			return -1;
		}
		if (js == JOURNAL_ACCEPTED) {
			r->state = R_DONE;
			log_info("%s: to=<%s> already accepted in an earlier attempt: skipped",
			         d->qid, r->addr);
		} else if (js == JOURNAL_FAILED) {
			r->state = R_FAILED;
		}
	}
	for (i = 0; i < d->n_rcpts; i++)
		if (a->rc[i].state == R_TODO)
			a->todo[a->n_todo++] = a->rc[i].addr;
	return 0;
}

/* rcpt_outcome - recipient i's reply r: its state, the journal, the log line */
void
rcpt_outcome(struct attempt *a, size_t i, const struct smtp_reply *r)
{
	struct delivery *d = a->d;
	struct rcpt *rc = &a->rc[i];
	struct store_err se;
	struct outcome ro;

	outcome_reply(&ro, a->p.host, r);
	switch (reply_classify(r)) {
	case RC_OK:
		rc->state = R_DONE;
		a->n_now++;
		if (store_journal_put(a->st, d->jid, rc->addr, JOURNAL_ACCEPTED, r->text,
		                      store_now(), &se) < 0)
			log_warnx("%s: journal: %s (a retry could send to <%s> again)", d->qid,
			          se.msg, rc->addr);
		break;
	case RC_PERM:
		rc->state = R_FAILED;
		m3_strlcpy(rc->reply, ro.line, sizeof(rc->reply));
		if (store_journal_put(a->st, d->jid, rc->addr, JOURNAL_FAILED, ro.line, store_now(),
		                      &se) < 0)
			log_warnx("%s: journal: %s", d->qid, se.msg);
		break;
	case RC_TEMP:
	case RC_CONFIG:
		rc->state = R_TEMP;
		if (a->first_temp.line[0] == '\0')
			a->first_temp = ro;
		break;
	}
	log_info("%s: to=<%s> relay=%s[%s]:%u mode=%s%s%s tls=%s%s status=%s (%d %s)", d->qid,
	         rc->addr, a->p.host, a->s.net.peer, a->p.port, mode_name(a->p.mode),
	         a->p.mailbox ? " mailbox=" : "", a->p.mailbox ? a->p.mailbox->name : "",
	         a->p.mode == MODE_GRAPH ? "https"
	         : a->s.net.tls_version  ? a->s.net.tls_version
	                                 : "none",
	         a->s.net.resumed ? " resumed" : "",
	         rc->state == R_DONE     ? "sent"
	         : rc->state == R_FAILED ? "bounced"
	                                 : "deferred",
	         r->code, r->text);
	if (rc->state != R_DONE && reply_hint(r) != NULL)
		log_warnx("%s: hint: %s", d->qid, reply_hint(r));
}

/* Step 6: the transaction, each recipient's outcome recorded; -1 if it broke off */
static int
transact(struct attempt *a)
{
	struct delivery *d = a->d;
	struct smtp_msg m = {d->msg.wire, d->msg.wire_len, d->msg.size, d->msg.eightbit,
	                     d->msg.utf8_headers};
	size_t i, k = 0;
	int rc;

	a->s_clean = false;
	rc = smtp_transaction(&a->s, a->p.sender, a->todo, a->n_todo, &m, a->rr, &a->final);

	if (mode_has_mailbox(a->p.mode))
		windows_went(d, &a->p, a->st, &a->adm, store_now() + 1);
	if (rc < 0) {
		net_failure(d, &a->s, "the mail transaction", &a->first_temp);
		for (i = 0; i < d->n_rcpts; i++)
			if (a->rc[i].state == R_TODO)
				a->rc[i].state = R_TEMP;
		return -1;
	}
	for (i = 0; i < d->n_rcpts; i++) {
		const struct smtp_reply *r;
		if (a->rc[i].state != R_TODO)
			continue;
		r = &a->rr[k++];
		/* Accepted at RCPT: the end of DATA decides. */
		rcpt_outcome(a, i, reply_classify(r) == RC_OK ? &a->final : r);
	}
	return 0;
}

/*
 * session_reusable - the LMTP service keeps a session whose every reply
 * was a delivery or a refusal of the recipient for good; anything that
 * speaks of the session or the server (421 closing, 432 too many
 * sessions, 451 trouble, 5.7.x authentication or policy of the sender:
 * reply_classify's RC_TEMP and RC_CONFIG) ends it.
 */
static bool
kept_class(const struct smtp_reply *r)
{
	enum reply_class c = reply_classify(r);
	return c == RC_OK || c == RC_PERM;
}

static bool
session_reusable(const struct attempt *a)
{
	size_t i;

	if (a->s.net.fd < 0 || a->final.code == 0 || !kept_class(&a->final))
		return false;
	for (i = 0; i < a->n_todo; i++)
		if (!kept_class(&a->rr[i]))
			return false;
	return true;
}

/* Steps 3 to 5: the slot, the session, the windows */
static int
session_ready(struct attempt *a, struct outcome *o)
{
	struct delivery *d = a->d;
	const struct transport_conf *tc = &d->conf->transport;
	struct plan *p = &a->p;

	/* One submission holds at most the mailbox's recipients_per_message:
	 * Postfix splits deliveries (m365_destination_recipient_limit); one
	 * larger than that is a configuration to fix, and waits for it. */
	if (mode_has_mailbox(p->mode) && a->n_todo > p->mailbox->recipients_per_message) {
		outcome_local(o, OUT_DEFER, "4.5.3",
		              "%zu recipients in one delivery, more than %s takes in one "
		              "message (%u): set m365_destination_recipient_limit to at most "
		              "that in Postfix's main.cf",
		              a->n_todo, p->mailbox->name, p->mailbox->recipients_per_message);
		return -1;
	}
	if (p->mode == MODE_GRAPH)
		return graph_ready(a, o);
	a->s.helo = tc->helo_name;
	a->s.t.connect = tc->timeout_connect;
	a->s.t.greeting = tc->timeout_greeting;
	a->s.t.command = tc->timeout_command;
	a->s.t.data = tc->timeout_data;
	a->s.t.block = tc->timeout_block;
	a->s.t.dot = tc->timeout_dot;
	/* A kept session comes authenticated, with its slot. */
	if (d->pool == NULL || pool_take(d->pool, p, &a->s, &a->slot, &a->me, &a->s_opened) == 0) {
		if (mode_has_mailbox(p->mode)) {
			store_self(&a->me, store_now());
			if (take_slot(d, p, a->st, &a->me, o) < 0)
				return -1;
			a->slot = true;
		}
		if (session_open(d, p, &a->s, o) < 0)
			return -1;
		a->s_opened = store_now();
		if (mode_has_mailbox(p->mode) && authenticate(d, p, &a->s, o) < 0)
			return -1;
	}
	a->s_clean = true;
	if ((a->s.ext & EXT_SIZE) && a->s.size_limit > 0 && d->msg.size > a->s.size_limit) {
		outcome_local(o, OUT_BOUNCE, "5.3.4",
		              "message of %lu bytes is larger than %s accepts (%lu bytes)",
		              d->msg.size, p->host, a->s.size_limit);
		return -1;
	}
	/* The windows, now that the message is about to go. */
	if (mode_has_mailbox(p->mode) && take_windows(d, p, a->st, a->n_todo, &a->adm, o) < 0)
		return -1;
	return 0;
}

/*
 * policy_note - Postfix logs the outcome line with the delivery (pipe(8)
 * keeps about its first 100 bytes): say there that the policy, not the
 * milter, routed the message, and why - first for a delivery (Microsoft's
 * reply is also in our own log line), after the status for a deferral
 * (whose line must start with it).
 */
static void
policy_note(const struct delivery *d, struct outcome *o)
{
	char note[128], rest[sizeof(o->line)];

	if (o->kind == OUT_BOUNCE || o->line[0] == '\0')
		return;
	snprintf(note, sizeof(note), "routed by the policy (%s)", d->untrusted);
	if (o->kind == OUT_SENT) {
		m3_strlcpy(rest, o->line, sizeof(rest));
		m3_strlcpy(o->line, note, sizeof(o->line));
		m3_strlcat(o->line, ": ", sizeof(o->line));
		m3_strlcat(o->line, rest, sizeof(o->line));
	} else {
		m3_strlcat(o->line, "; ", sizeof(o->line));
		m3_strlcat(o->line, note, sizeof(o->line));
	}
}

/* attempt_end - what outlives no attempt: the session, the slot, the store */
static void
attempt_end(struct attempt *a, struct outcome *o)
{
	struct store_err se;

	if (a->d->pool != NULL && a->s_clean && a->s.net.fd >= 0) {
		/* Ready but not used (the windows were full, the message too
		 * large): the next message may use it. */
		pool_put(a->d->pool, &a->p, &a->s, a->slot, &a->me, a->s_opened);
		a->slot = false;
	}
	if (a->s.net.fd >= 0)
		smtp_quit(&a->s);
	if (a->adm.msg != 0 || a->adm.rcpt != 0)
		windows_went(a->d, &a->p, a->st, &a->adm, 0); /* taken, nothing sent */
	graph_close(&a->curl);
	sbuf_free(&a->mime);
	if (a->slot && store_slot_release(a->st, a->p.mailbox->name, &a->me, &se) < 0)
		log_warnx("%s: releasing the session slot: %s (it frees when this process ends)",
		          a->d->qid, se.msg);
	if (a->by_policy) {
		size_t i;
		policy_note(a->d, o);
		/* LMTP: Postfix logs each recipient's reply: the note goes there */
		for (i = 0; a->d->per_rcpt != NULL && i < a->d->n_rcpts; i++)
			policy_note(a->d, &a->d->per_rcpt[i]);
	}
	if (o->kind != OUT_SENT && o->line[0] != '\0')
		log_info("%s: %s: %s", a->d->qid, o->kind == OUT_DEFER ? "deferred" : "bounced",
		         o->line);
	if (a->d->pool == NULL)
		store_close(a->st); /* the LMTP service keeps its handle */
	free(a->todo);
	free(a->rr);
	free(a->rc);
}

void
deliver(struct delivery *d, struct outcome *o)
{
	struct attempt a;
	struct store_err se;
	size_t i;

	memset(o, 0, sizeof(*o));
	memset(&a, 0, sizeof(a));
	a.d = d;
	net_init(&a.s.net);
	a.rc = calloc(d->n_rcpts ? d->n_rcpts : 1, sizeof(*a.rc));
	a.todo = calloc(d->n_rcpts ? d->n_rcpts : 1, sizeof(*a.todo));
	a.rr = calloc(d->n_rcpts ? d->n_rcpts : 1, sizeof(*a.rr));
	if (a.rc == NULL || a.todo == NULL || a.rr == NULL) {
		outcome_local(o, OUT_DEFER, "4.3.0", "out of memory");
		goto out;
	}
	for (i = 0; i < d->n_rcpts; i++)
		a.rc[i].addr = d->rcpts[i];

	if (journal_key(d) < 0) {
		outcome_local(o, OUT_DEFER, "4.3.0", "no key for the journal (digest failed)");
		goto out;
	}
	/* Step 1: the route. */
	if (plan_delivery(d, &a.p, a.rc, &a.first_temp, &a.by_policy, o) < 0)
		goto out;
	/* Step 2: the journal. */
	a.st = d->pool != NULL ? pool_store(d->pool, &se) : store_open(d->conf, &se);
	if (a.st == NULL) {
		outcome_local(o, OUT_DEFER, "4.3.0", "state store: %s", se.msg);
		goto out;
	}
	if (journal_read(&a, o) < 0)
		goto out;
	if (a.n_todo == 0) {
		finish(d, a.rc, a.st, o, &a.first_temp, NULL, 0);
		goto out;
	}
	/* Steps 3 to 5, then 6: the transaction, and 7: the outcome. */
	if (session_ready(&a, o) < 0)
		goto out;
	if (a.p.mode == MODE_GRAPH) {
		graph_transact(&a);
		finish(d, a.rc, a.st, o, &a.first_temp, a.final.code / 100 == 2 ? &a.final : NULL,
		       a.n_now);
		goto out;
	}
	if (transact(&a) < 0) {
		finish(d, a.rc, a.st, o, &a.first_temp, NULL, 0);
		goto out;
	}
	if (d->pool != NULL && session_reusable(&a)) {
		pool_put(d->pool, &a.p, &a.s, a.slot, &a.me, a.s_opened);
		a.slot = false; /* the pool holds it with the session */
	} else {
		smtp_quit(&a.s);
	}
	finish(d, a.rc, a.st, o, &a.first_temp, a.final.code / 100 == 2 ? &a.final : NULL, a.n_now);
out:
	if (d->per_rcpt != NULL)
		each_early(d, a.rc, o);
	attempt_end(&a, o);
}
