/*
 * pool.c - sessions kept across the LMTP service's messages (see pool.h).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan.h"
#include "pool.h"
#include "util/log.h"
#include "util/util.h"

#define RSET_TIMEOUT 30 /* s */

void
pool_init(struct pool *pl, const struct conf *conf)
{
	memset(pl, 0, sizeof(*pl));
	pl->conf = conf;
}

struct store *
pool_store(struct pool *pl, struct store_err *e)
{
	if (pl->st == NULL)
		pl->st = store_open(pl->conf, e);
	return pl->st;
}

/* pool_key - what makes two sessions interchangeable */
static void
pool_key(const struct plan *p, char *buf, size_t size)
{
	snprintf(buf, size, "%s|%s|%u|%s|%s|%d", mode_name(p->mode), p->host, p->port,
	         p->mailbox != NULL ? p->mailbox->name : "",
	         p->connector != NULL ? p->connector->name : "", p->tls_verify);
}

/* drop - close one kept session and give its slot back */
static void
drop(struct pool *pl, struct pooled *e, const char *why, bool quit)
{
	struct store_err se;

	log_debug("session %s closed: %s", e->key, why);
	if (quit)
		smtp_quit(&e->s);
	else
		net_close(&e->s.net); /* it did not answer: no QUIT to wait for */
	if (e->mailbox[0] != '\0' &&
	    (pl->st == NULL || store_slot_release(pl->st, e->mailbox, &e->me, &se) < 0))
		log_warnx("releasing %s's session slot: %s (it frees when this process ends)",
		          e->mailbox, pl->st == NULL ? "no state store" : se.msg);
	memset(e, 0, sizeof(*e));
	e->s.net.fd = -1;
}

int
pool_take(struct pool *pl, const struct plan *p, struct smtp *s, bool *slot, struct holder *me,
          uint64_t *opened)
{
	const struct transport_conf *tc = &pl->conf->transport;
	char key[sizeof(pl->e[0].key)];
	struct smtp_reply r;
	uint64_t now = store_now();
	size_t i;
	int rc;

	pool_key(p, key, sizeof(key));
	for (i = 0; i < POOL_MAX; i++) {
		struct pooled *e = &pl->e[i];
		if (!e->used || strcmp(e->key, key) != 0)
			continue;
		if (now - e->opened >= (uint64_t)tc->session_reuse_limit * 1000) {
			drop(pl, e, "reuse time limit", true);
			return 0;
		}
		/* Alive, and in a state to take a transaction: RSET says both,
		 * within RSET_TIMEOUT (a connection a firewall forgot must not
		 * hold the message for a whole command timeout). */
		e->s.t = s->t;
		if (e->s.t.command > RSET_TIMEOUT)
			e->s.t.command = RSET_TIMEOUT;
		rc = smtp_rset(&e->s, &r);
		e->s.t.command = s->t.command;
		if (rc < 0 || r.code != 250) {
			char why[1100];
			if (r.code != 0)
				snprintf(why, sizeof(why), "%d %s", r.code, r.text);
			else
				m3_strlcpy(why, e->s.net.err, sizeof(why));
			log_info("session to %s[%s]:%u for %s not reusable (%s): opening another",
			         p->host, e->s.net.peer, p->port,
			         p->mailbox != NULL ? p->mailbox->name : mode_name(p->mode), why);
			drop(pl, e, "RSET failed", false);
			return 0;
		}
		*s = e->s;
		net_moved(&s->net);
		*slot = e->mailbox[0] != '\0';
		*me = e->me;
		*opened = e->opened;
		memset(e, 0, sizeof(*e));
		e->s.net.fd = -1;
		pl->reused++;
		return 1;
	}
	return 0;
}

void
pool_put(struct pool *pl, const struct plan *p, struct smtp *s, bool slot, const struct holder *me,
         uint64_t opened)
{
	struct pooled *e = NULL;
	uint64_t now = store_now();
	size_t i;

	if (pl->conf->transport.session_idle == 0 || (slot && pl->no_slotted)) {
		struct store_err se;
		smtp_quit(s);
		/* not kept: its slot goes back now (the caller leaves it to us) */
		if (slot &&
		    (pl->st == NULL || store_slot_release(pl->st, p->mailbox->name, me, &se) < 0))
			log_warnx(
			    "releasing %s's session slot: %s (it frees when this process ends)",
			    p->mailbox->name, pl->st == NULL ? "no state store" : se.msg);
		return;
	}
	for (i = 0; i < POOL_MAX; i++)
		if (!pl->e[i].used) {
			e = &pl->e[i];
			break;
		}
	if (e == NULL) { /* full: the least recently used goes */
		e = &pl->e[0];
		for (i = 1; i < POOL_MAX; i++)
			if (pl->e[i].idle_since < e->idle_since)
				e = &pl->e[i];
		drop(pl, e, "the pool is full", true);
	}
	e->used = true;
	pool_key(p, e->key, sizeof(e->key));
	if (slot)
		m3_strlcpy(e->mailbox, p->mailbox->name, sizeof(e->mailbox));
	e->me = *me;
	e->s = *s;
	net_moved(&e->s.net);
	e->opened = opened;
	e->idle_since = now;
	net_init(&s->net); /* the pool has it now */
}

void
pool_drop_mailbox(struct pool *pl, const char *mailbox)
{
	size_t i;

	for (i = 0; i < POOL_MAX; i++)
		if (pl->e[i].used && strcmp(pl->e[i].mailbox, mailbox) == 0)
			drop(pl, &pl->e[i], "the mailbox is about to be used another way", true);
}

void
pool_drop_slots(struct pool *pl)
{
	size_t i;

	for (i = 0; i < POOL_MAX; i++)
		if (pl->e[i].used && pl->e[i].mailbox[0] != '\0')
			drop(pl, &pl->e[i], "another mailbox waits for a slot", true);
}

/* drops_write - the batch of journal drops, in one write */
static void
drops_write(struct pool *pl)
{
	struct journal_ref *refs;
	struct store_err e;
	struct store *st;
	size_t i;
	int rc = STORE_FAIL;

	if (pl->n_drops == 0)
		return;
	refs = calloc(pl->n_drops, sizeof(*refs));
	st = pool_store(pl, &e);
	if (refs == NULL)
		m3_strlcpy(e.msg, "out of memory", sizeof(e.msg));
	else if (st != NULL) {
		for (i = 0; i < pl->n_drops; i++) {
			refs[i].qid = pl->drops[i].jid;
			refs[i].rcpt = pl->drops[i].rcpt;
		}
		rc = store_journal_forget(st, refs, pl->n_drops, &e);
	}
	for (i = 0; i < pl->n_drops; i++) {
		if (rc != STORE_OK &&
		    (i == 0 || strcmp(pl->drops[i].jid, pl->drops[i - 1].jid) != 0))
			log_warnx("%s: journal: entry kept, it expires by itself within 7 days: %s",
			          pl->drops[i].qid, e.msg);
		free(pl->drops[i].rcpt);
	}
	free(refs);
	pl->n_drops = 0;
}

void
pool_drop_journal(struct pool *pl, const char *jid, const char *qid, const char *const *rcpts,
                  size_t n)
{
	size_t i;

	if (pl->n_drops > 0 && pl->n_drops + n > POOL_DROPS)
		drops_write(pl);
	if (pl->n_drops + n > pl->cap_drops) {
		size_t cap = pl->n_drops + n > POOL_DROPS ? pl->n_drops + n : POOL_DROPS;
		struct pending_drop *d = realloc(pl->drops, cap * sizeof(*d));
		if (d == NULL) {
			log_warnx("%s: journal: entry kept, it expires by itself within 7 days: "
			          "out of memory",
			          qid);
			return;
		}
		pl->drops = d;
		pl->cap_drops = cap;
	}
	if (pl->n_drops == 0)
		pl->drops_since = store_now();
	for (i = 0; i < n; i++) {
		struct pending_drop *d = &pl->drops[pl->n_drops];
		m3_strlcpy(d->jid, jid, sizeof(d->jid));
		m3_strlcpy(d->qid, qid, sizeof(d->qid));
		d->rcpt = strdup(rcpts[i]);
		if (d->rcpt == NULL) {
			log_warnx("%s: journal: entry of <%s> kept, it expires by itself within 7 "
			          "days: out of memory",
			          qid, rcpts[i]);
			continue;
		}
		pl->n_drops++;
	}
	if (pl->n_drops >= POOL_DROPS)
		drops_write(pl);
}

void
pool_drops_due(struct pool *pl, uint64_t now)
{
	if (pl->n_drops > 0 && now >= pl->drops_since + POOL_DROP_MS)
		drops_write(pl);
}

int
pool_expire(struct pool *pl, uint64_t now)
{
	uint64_t idle = (uint64_t)pl->conf->transport.session_idle * 1000;
	int next = -1;
	size_t i;

	pool_drops_due(pl, now);
	if (pl->n_drops > 0)
		next = (int)(pl->drops_since + POOL_DROP_MS - now);

	for (i = 0; i < POOL_MAX; i++) {
		struct pooled *e = &pl->e[i];
		uint64_t due;
		if (!e->used)
			continue;
		due = e->idle_since + idle;
		if (now >= due) {
			drop(pl, e, "idle", true);
			continue;
		}
		if (next < 0 || due - now < (uint64_t)next)
			next = (int)(due - now);
	}
	return next;
}

void
pool_close(struct pool *pl)
{
	size_t i;

	for (i = 0; i < POOL_MAX; i++)
		if (pl->e[i].used)
			drop(pl, &pl->e[i], "the LMTP connection ended", true);
	if (pl->reused > 0)
		log_info("sessions to Microsoft 365 reused %u time(s)", pl->reused);
	drops_write(pl);
	free(pl->drops);
	pl->drops = NULL;
	pl->cap_drops = 0;
	store_close(pl->st);
	pl->st = NULL;
}
