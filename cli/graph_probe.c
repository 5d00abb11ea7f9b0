/*
 * graph_probe.c - GET /v1.0/users/{mailbox} (graph_probe.h).
 */
#include "config.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph_probe.h"
#include "net/oauth.h"
#include "util/sbuf.h"
#include "util/util.h"

static size_t
keep_body(char *p, size_t size, size_t n, void *arg)
{
	sbuf_add(arg, p, size * n); /* past its bound: ignored */
	return size * n;
}

/* answer - error.code and error.message of a Graph error body */
static void
answer(const struct sbuf *body, struct graph_probe *r)
{
	json_object *j, *err, *v;

	if (body->s == NULL || (j = json_tokener_parse(body->s)) == NULL)
		return;
	if (json_object_object_get_ex(j, "error", &err)) {
		if (json_object_object_get_ex(err, "code", &v))
			m3_strlcpy(r->code, json_object_get_string(v), sizeof(r->code));
		if (json_object_object_get_ex(err, "message", &v))
			m3_strlcpy(r->message, json_object_get_string(v), sizeof(r->message));
	}
	json_object_put(j);
}

int
graph_probe(const struct conf *conf, const struct tenant *t, const char *mailbox, const char *token,
            struct graph_probe *r)
{
	struct curl_slist *h = NULL;
	struct sbuf url, auth, body;
	const char *why;
	CURL *curl;
	char *box = NULL;
	int rc = -1;

	memset(r, 0, sizeof(*r));
	if (curl_load(&why) < 0) {
		m3_strlcpy(r->err, why, sizeof(r->err));
		return -1;
	}
	curl = curl_easy_init();
	sbuf_init(&url, 4096);
	sbuf_init(&auth, 16384);
	sbuf_init(&body, 16384);
	if (curl == NULL || (box = curl_easy_escape(curl, mailbox, 0)) == NULL) {
		m3_strlcpy(r->err, "out of memory", sizeof(r->err));
		goto out;
	}
	sbuf_addf(&url, "%s/v1.0/users/%s", t->graph_endpoint, box);
	sbuf_addf(&auth, "Authorization: Bearer %s", token);
	if (url.failed || auth.failed || (h = curl_slist_append(h, auth.s)) == NULL) {
		m3_strlcpy(r->err, "out of memory", sizeof(r->err));
		goto out;
	}
	curl_easy_setopt(curl, CURLOPT_URL, url.s);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, keep_body);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, (void *)&body);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, r->err);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, (long)conf->transport.timeout_connect);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT, 30L);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	oauth_https_opts(curl, conf->transport.ca_file);
	if (curl_easy_perform(curl) == CURLE_OK) {
		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &r->status);
		answer(&body, r);
		rc = 0;
	}
out:
	curl_slist_free_all(h);
	curl_free(box);
	sbuf_cleanse(&auth);
	sbuf_free(&auth);
	sbuf_free(&url);
	sbuf_free(&body);
	if (curl != NULL)
		curl_easy_cleanup(curl);
	return rc;
}

const char *
graph_probe_hint(long status)
{
	switch (status) {
	case 401:
		return "the token is not for this Graph endpoint: check graph_endpoint and "
		       "graph_scope (the tenant's cloud)";
	case 403:
		return "grant the app Mail.Send (application) with admin consent; an application "
		       "access policy may exclude this mailbox (Test-ApplicationAccessPolicy)";
	case 404:
		return "no such mailbox in the tenant (or it has no Exchange Online licence)";
	default:
		return "see Graph's error above";
	}
}
