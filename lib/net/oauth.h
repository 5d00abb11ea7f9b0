/*
 * oauth.h - OAuth2 client credentials for SMTP AUTH XOAUTH2 and Graph.
 *
 * oauth_get() hands out a token for an app from a cache shared by every
 * transport process (one file per authority, tenant, client and scope under
 * state_dir/tokens, mode 0600, replaced atomically) and fetches a new one
 * only when less than token_margin remains, one process at a time (an
 * exclusive lock; the others wait and then read what it fetched).  The
 * credential is a client secret (from its file) or a client assertion: a
 * JWT signed with the app's key, PS256 with x5t#S256 by default, RS256 with
 * x5t as an option.
 *
 * Errors: -1 with struct oauth_err: OAUTH_ETEMP (the endpoint is down,
 * slow, answers 5xx or nonsense), OAUTH_EREFUSED (it refused with an
 * AADSTS code: the app's registration, with a hint), OAUTH_ELOCAL (our
 * files, keys, token cache, memory).  All defer mail; none is ever a
 * reason to bounce.  Tokens and secrets
 * are never logged.
 */
#ifndef M3_OAUTH_H
#define M3_OAUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf/conf.h"

#define OAUTH_TOKEN_MAX 8192

struct oauth_token {
	char access[OAUTH_TOKEN_MAX];
	uint64_t expires_at; /* seconds since the epoch */
	bool fetched;        /* this call went to the endpoint */
};

enum oauth_code {
	OAUTH_OK,
	OAUTH_ETEMP,    /* the endpoint: unreachable, 5xx, a reply that is not a token */
	OAUTH_EREFUSED, /* the endpoint said no (AADSTS code) */
	OAUTH_ELOCAL,   /* ours: secret, certificate, key, cache, memory */
};

struct oauth_err {
	enum oauth_code code;
	char msg[768];
	long aadsts;      /* the AADSTS code, 0 if none */
	const char *hint; /* how to fix it, or NULL */
};

/* oauth_https_opts - what every HTTPS request of ours holds to (the token
 * endpoint, Graph): https only, TLS 1.2 or later, verified against
 * ca_file (NULL: the system store); curl is a CURL handle */
void oauth_https_opts(void *curl, const char *ca_file);
/* oauth_token_url - "{authority}/{tenant}/oauth2/v2.0/token" */
int oauth_token_url(const struct app *app, char *buf, size_t size);
/*
 * oauth_get - a valid token for app and scope (the tenant's scope for SMTP,
 * its graph_scope for Graph: one cache entry each).  rejected, if not
 * NULL, is a token the server refused (535 5.7.3, HTTP 401): it is dropped
 * and a new one fetched, unless another process already replaced it.
 */
int oauth_get(const struct conf *conf, const struct app *app, const char *scope,
              const char *rejected, struct oauth_token *t, struct oauth_err *e);
/* oauth_fetch - a new token from the endpoint, bypassing the cache */
int oauth_fetch(const struct conf *conf, const struct app *app, const char *scope,
                struct oauth_token *t, struct oauth_err *e);
/* oauth_parse_answer - the token endpoint's answer (status, body) into t; -1 with e */
int oauth_parse_answer(const char *url, long status, const char *body, size_t len, uint64_t now,
                       struct oauth_token *t, struct oauth_err *e);
/* oauth_cache_parse - a token cache file's text into t; -1 if not usable */
int oauth_cache_parse(const char *text, size_t len, uint64_t now, struct oauth_token *t);
/* oauth_assertion - the client assertion JWT for app at time now */
int oauth_assertion(const struct app *app, const char *token_url, uint64_t now, char *buf,
                    size_t size, struct oauth_err *e);
/* oauth_claims - the decoded payload of a JWT access token (JSON text) */
int oauth_claims(const char *token, char *json, size_t size);
/* oauth_aadsts_hint - the fix for an AADSTS code, or NULL */
const char *oauth_aadsts_hint(long code);

#endif
