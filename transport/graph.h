/*
 * graph.h - mode graph: the message posted to Microsoft Graph's
 * POST /v1.0/users/{mailbox}/sendMail as its MIME, base64-encoded
 * (Content-Type: text/plain), with an app-only token for the tenant's
 * graph_scope.  Private to the transport.
 *
 * Graph has no envelope: it delivers to the addresses in the To, Cc and
 * Bcc fields of the MIME.  graph_mime() makes those exactly the
 * delivery's envelope recipients:
 *   - a To or Cc field whose addresses are all envelope recipients is
 *     sent as written;
 *   - one naming an address that is not (a header-only recipient, one
 *     an earlier attempt already reached, one Postfix delivers in another
 *     batch) is rewritten without it, or dropped when nothing is left;
 *     a field that does not parse is dropped;
 *   - the message's own Bcc fields are dropped, and one Bcc field names
 *     every envelope recipient the To and Cc fields do not (Exchange
 *     delivers to Bcc recipients and removes the field).
 * What it changed is said in `note`, for the log.
 *
 * Graph's answer becomes an SMTP-like reply (graph_reply) so that the
 * transport's journal, outcome and report code treat it like any other:
 * 202 -> 250; 429, 503, 504 -> 451 4.7.500 (throttled: Retry-After goes to
 * the pacing store); 413 and ErrorMessageSizeExceeded -> 552 5.3.4,
 * ErrorMimeContentInvalidBase64String -> 554 5.6.0, ErrorInvalidRecipients
 * -> 550 5.1.3 (bounces, Graph's code and message in the text); 401, 403,
 * 404 and everything else -> 4xx (deferred, with a hint).
 */
#ifndef M3_GRAPH_H
#define M3_GRAPH_H

#include <stdbool.h>
#include <stddef.h>

#include "net/curl_dl.h"
#include "net/smtp.h"
#include "util/sbuf.h"

#define GRAPH_BODY_MAX  65536 /* bytes of an answer we read */
#define GRAPH_RETRY_MAX 3600  /* seconds of Retry-After we believe */
#define GRAPH_RETRY_DEF 60    /* when a throttling answer gives none */
#define GRAPH_MAILBOXES 1000  /* addresses in one To or Cc field we parse */

struct graph_answer {
	long status;          /* HTTP status; 0: no answer */
	char code[64];        /* error.code, "" if none */
	char message[256];    /* error.message, printable ASCII */
	char request_id[64];  /* request-id header */
	char client_id[64];   /* client-request-id header */
	char peer[64];        /* the address connected */
	unsigned retry_after; /* seconds (Retry-After), 0 if none */
	bool has_retry_after;
};

/* graph_mime - the MIME Graph is given, from the wire form (CRLF,
 * dot-stuffed, final "."): unstuffed, its recipient fields made to match
 * rcpts (n addresses); -1 if memory fails or an rcpt does not parse */
int graph_mime(const char *wire, size_t len, const char *const *rcpts, size_t n, struct sbuf *out,
               char *note, size_t note_size);
/* graph_header - one response header line into a (request ids, Retry-After) */
void graph_header(const char *line, size_t len, struct graph_answer *a);
/* graph_body - an error body {"error":{"code":..,"message":..}} into a */
void graph_body(const char *body, size_t len, struct graph_answer *a);
/* graph_printable - copy n bytes of s, printable ASCII kept (others: blank) */
void graph_printable(char *dst, size_t size, const char *s, size_t n);
/* graph_reply - the answer as an SMTP-like reply; the hint for it, or NULL */
const char *graph_reply(const struct graph_answer *a, struct smtp_reply *r);

enum graph_code {
	GRAPH_OK,
	GRAPH_ENET,   /* no answer: resolve, connect, TLS, timeout, closed */
	GRAPH_ELOCAL, /* memory, libcurl set-up */
};

struct graph_err {
	enum graph_code code;
	char msg[CURL_ERROR_SIZE + 128];
};

struct delivery;
struct plan;
/* graph_post - one sendMail request with token; *curl is created on first
 * use and kept for the next request of the delivery (connection reuse) */
int graph_post(const struct delivery *d, const struct plan *p, void **curl, const char *token,
               const char *mime, size_t len, struct graph_answer *a, struct graph_err *err);
/* graph_close - the connection kept by graph_post */
void graph_close(void **curl);

#endif
