/*
 * graph.c - mode graph: the request and the delivery's steps (graph.h);
 * the MIME and the reading of the answer are in graph_wire.c.
 */
#include "config.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr/addr.h"
#include "deliver.h"
#include "graph.h"
#include "net/oauth.h"
#include "net/outcome.h"
#include "plan.h"
#include "store/store.h"
#include "util/log.h"
#include "util/util.h"

/* The request ----------------------------------------------------------------------------- */

struct answer_ctx {
	struct graph_answer *a;
	struct sbuf body;
};

static size_t
on_header(char *p, size_t size, size_t n, void *arg)
{
	struct answer_ctx *x = arg;

	graph_header(p, size * n, x->a);
	return size * n;
}

static size_t
on_body(char *p, size_t size, size_t n, void *arg)
{
	struct answer_ctx *x = arg;

	sbuf_add(&x->body, p, size * n); /* past GRAPH_BODY_MAX: ignored */
	return size * n;
}

void
graph_close(void **curl)
{
	if (*curl != NULL)
		curl_easy_cleanup(*curl);
	*curl = NULL;
}

int
graph_post(const struct delivery *d, const struct plan *p, void **curlp, const char *token,
           const char *mime, size_t len, struct graph_answer *a, struct graph_err *err)
{
	const struct transport_conf *tc = &d->conf->transport;
	struct answer_ctx x = {a, {0}};
	struct curl_slist *h = NULL;
	struct sbuf url, auth, rid;
	unsigned char raw[16];
	char *box = NULL, errbuf[CURL_ERROR_SIZE] = "";
	unsigned char *b64 = NULL;
	CURL *curl = *curlp;
	const char *why;
	CURLcode cc;
	int rc = -1;

	memset(a, 0, sizeof(*a));
	if (curl_load(&why) < 0)
		return M3_FAIL(err, GRAPH_ELOCAL, "%s", why);
	sbuf_init(&x.body, GRAPH_BODY_MAX);
	sbuf_init(&url, 4096);
	sbuf_init(&auth, 16384);
	sbuf_init(&rid, 128);
	if (curl == NULL)
		curl = *curlp = curl_easy_init();
	b64 = malloc(4 * ((len + 2) / 3) + 1);
	if (curl == NULL || b64 == NULL || RAND_bytes(raw, sizeof(raw)) != 1) {
		M3_FAIL(err, GRAPH_ELOCAL, "cannot set up the request (memory)");
		goto out;
	}
	EVP_EncodeBlock(b64, (const unsigned char *)mime, (int)len);
	box = curl_easy_escape(curl, p->mailbox->name, 0);
	sbuf_addf(&url, "%s/v1.0/users/%s/sendMail", p->tenant->graph_endpoint, box ? box : "");
	sbuf_addf(&auth, "Authorization: Bearer %s", token);
	/* Our id for the request, in Graph's logs and ours: a version 4 UUID (RFC 9562). */
	sbuf_addf(&rid,
	          "client-request-id: %02x%02x%02x%02x-%02x%02x-4%x%02x-%02x%02x-"
	          "%02x%02x%02x%02x%02x%02x",
	          raw[0], raw[1], raw[2], raw[3], raw[4], raw[5], raw[6] & 15, raw[7],
	          (raw[8] & 0x3f) | 0x80, raw[9], raw[10], raw[11], raw[12], raw[13], raw[14],
	          raw[15]);
	h = curl_slist_append(h, auth.s ? auth.s : "");
	h = curl_slist_append(h, "Content-Type: text/plain");
	h = curl_slist_append(h, rid.s ? rid.s : "");
	h = curl_slist_append(h, "Expect:"); /* no 100-continue round trip */
	if (box == NULL || url.failed || auth.failed || rid.failed || h == NULL) {
		M3_FAIL(err, GRAPH_ELOCAL, "cannot set up the request (memory)");
		goto out;
	}
	curl_easy_reset(curl); /* the connection stays in the handle's cache */
	curl_easy_setopt(curl, CURLOPT_URL, url.s);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDS, (char *)b64);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen((char *)b64));
	curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(curl, CURLOPT_HEADERDATA, &x);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &x);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, (long)tc->timeout_connect);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT, (long)(tc->timeout_data + tc->timeout_dot));
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	oauth_https_opts(curl, tc->ca_file);
	cc = curl_easy_perform(curl);
	if (cc != CURLE_OK) {
		M3_FAIL(err, GRAPH_ENET, "%s: %s", p->tenant->graph_endpoint,
		        errbuf[0] ? errbuf : curl_easy_strerror(cc));
		graph_close(curlp); /* a broken connection is not reused */
		goto out;
	}
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &a->status);
	{
		char *ip = NULL;
		if (curl_easy_getinfo(curl, CURLINFO_PRIMARY_IP, &ip) == CURLE_OK && ip != NULL)
			graph_printable(a->peer, sizeof(a->peer), ip, strlen(ip));
	}
	graph_body(x.body.s ? x.body.s : "", x.body.len, a);
	rc = 0;
out:
	curl_slist_free_all(h);
	curl_free(box);
	free(b64);
	sbuf_cleanse(&auth);
	sbuf_free(&auth);
	sbuf_free(&url);
	sbuf_free(&rid);
	sbuf_free(&x.body);
	return rc;
}

/* The steps -------------------------------------------------------------------------------- */

/* pause_wait - a pause Graph asked for (any transport's 429) is waited out
 * within pacing_wait, else the delivery defers until it ends */
static int
pause_wait(struct attempt *a, struct outcome *o)
{
	const struct delivery *d = a->d;
	uint64_t deadline = store_now() + (uint64_t)d->conf->transport.pacing_wait * 1000;
	uint64_t until, now;
	struct store_err e;
	char when[32];

	for (;;) {
		now = store_now();
		if (store_pause(a->st, a->p.mailbox->name, 0, now, &until, &e) != STORE_OK) {
			outcome_local(o, OUT_DEFER, "4.3.0", "state store: %s", e.msg);
			return -1;
		}
		if (until <= now)
			return 0;
		if (until > deadline) {
			outcome_local(o, OUT_DEFER, "4.7.500",
			              "Graph asked %s to wait (Retry-After) until %s",
			              a->p.mailbox->name, m3_utc_hms(until, when, sizeof(when)));
			return -1;
		}
		log_info("%s: Graph asked %s to wait: %llu ms", d->qid, a->p.mailbox->name,
		         (unsigned long long)(until - now));
		m3_sleep_ms(until - now);
	}
}

int
graph_ready(struct attempt *a, struct outcome *o)
{
	struct delivery *d = a->d;
	char note[1024];

	/* Room for the worst case: To/Cc rewritten with every display name
	 * quoted and escaped (at most twice the header), and one Bcc line per
	 * envelope recipient. */
	sbuf_init(&a->mime, d->msg.wire_len * 2 + a->n_todo * (ADDR_TEXT_MAX + 8) + 4096);
	if (graph_mime(d->msg.wire, d->msg.wire_len, a->todo, a->n_todo, &a->mime, note,
	               sizeof(note)) < 0) {
		outcome_local(o, OUT_DEFER, "4.3.0", "cannot build the message for Graph (memory)");
		return -1;
	}
	if (note[0] != '\0')
		log_info("%s: for Graph, the recipient fields follow the envelope: %s", d->qid,
		         note);
	if (a->mime.len > d->conf->transport.graph_max_size) {
		outcome_local(
		    o, OUT_BOUNCE, "5.3.4",
		    "message of %zu bytes is larger than one Graph sendMail request takes "
		    "(transport { graph_max_size = %lu }): send it smaller, or through a "
		    "mode that takes it (smtp-auth takes %lu)",
		    a->mime.len, d->conf->transport.graph_max_size, d->conf->transport.max_size);
		return -1;
	}
	/* Graph's 4 concurrent requests per app and mailbox: the mailbox's
	 * sessions (3 by default) bound them, shared with SMTP AUTH. */
	store_self(&a->me, store_now());
	if (take_slot(d, &a->p, a->st, &a->me, o) < 0)
		return -1;
	a->slot = true;
	if (pause_wait(a, o) < 0)
		return -1;
	return take_windows(d, &a->p, a->st, a->n_todo, &a->adm, o);
}

/* throttled - remember Graph's Retry-After for every transport of the mailbox */
static void
throttled(struct attempt *a, const struct graph_answer *ans)
{
	unsigned secs = ans->has_retry_after ? ans->retry_after : GRAPH_RETRY_DEF;
	uint64_t now = store_now(), until;
	struct store_err e;

	if (store_pause(a->st, a->p.mailbox->name, now + (uint64_t)secs * 1000, now, &until, &e) !=
	    STORE_OK)
		log_warnx("%s: state store: %s (the Retry-After is not shared)", a->d->qid, e.msg);
}

void
graph_transact(struct attempt *a)
{
	struct delivery *d = a->d;
	const struct mailbox_conf *mb = a->p.mailbox;
	struct oauth_token tok;
	struct graph_answer ans;
	struct graph_err ge;
	const char *hint;
	int tries, rc = -1;
	bool asked = false;
	size_t i;

	/* A cached token refused (401): drop it, fetch another, try once more. */
	for (tries = 0; tries < 2; tries++) {
		if (mailbox_token(d, mb, mb->tenant->graph_scope, tries ? tok.access : NULL, &tok,
		                  &a->first_temp) < 0) {
			rc = -1;
			break;
		}
		asked = true;
		rc = graph_post(d, &a->p, &a->curl, tok.access, a->mime.s, a->mime.len, &ans, &ge);
		if (rc < 0 || ans.status != 401 || tok.fetched)
			break;
	}
	memset(&tok, 0, sizeof(tok));
	/* The message counts from now once Graph was asked; never asked (no
	 * token), its place in the window is given back. */
	windows_went(d, &a->p, a->st, &a->adm, asked ? store_now() + 1 : 0);
	if (rc < 0) {
		if (a->first_temp.line[0] == '\0') {
			outcome_local(&a->first_temp, OUT_DEFER, "4.4.2", "%s (during sendMail)",
			              ge.msg);
			log_warnx("%s: %s", d->qid, a->first_temp.line);
		}
		for (i = 0; i < d->n_rcpts; i++)
			if (a->rc[i].state == R_TODO)
				a->rc[i].state = R_TEMP;
		return;
	}
	hint = graph_reply(&ans, &a->final);
	m3_strlcpy(a->s.net.peer, ans.peer, sizeof(a->s.net.peer));
	log_info("%s: Graph sendMail as %s: HTTP %ld%s%s request-id=%s client-request-id=%s",
	         d->qid, mb->name, ans.status, ans.code[0] ? " " : "", ans.code,
	         ans.request_id[0] ? ans.request_id : "-", ans.client_id[0] ? ans.client_id : "-");
	if (ans.status == 429 || ans.status == 503 || ans.status == 504)
		throttled(a, &ans);
	for (i = 0; i < d->n_rcpts; i++)
		if (a->rc[i].state == R_TODO)
			rcpt_outcome(a, i, &a->final);
	if (hint != NULL)
		log_warnx("%s: hint: %s", d->qid, hint);
}
