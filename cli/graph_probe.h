/*
 * graph_probe.h - a request to Microsoft Graph that sends nothing
 * (GET /v1.0/users/{mailbox}): proof that the endpoint answers over
 * verified TLS, takes the app's token and lets the app see the mailbox.
 * For m365ctl token test --graph and doctor --connect.
 */
#ifndef M3_GRAPH_PROBE_H
#define M3_GRAPH_PROBE_H

#include "net/curl_dl.h"
#include "conf/conf.h"

struct graph_probe {
	long status;               /* HTTP status, 0 if none */
	char code[64];             /* error.code, "" if none */
	char message[256];         /* error.message */
	char tls[32];              /* the TLS version, when known */
	char err[CURL_ERROR_SIZE]; /* no answer: why */
};

/* graph_probe - 0 with an answer in r (any status), -1 with r->err */
int graph_probe(const struct conf *conf, const struct tenant *t, const char *mailbox,
                const char *token, struct graph_probe *r);
/* graph_probe_hint - what to do about a status other than 200 */
const char *graph_probe_hint(long status);

#endif
