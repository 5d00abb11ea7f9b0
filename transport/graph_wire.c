/*
 * graph_wire.c - mode graph's pure parts (graph.h): the MIME Graph is
 * given, and what its answer says.  No I/O; fuzzed by
 * tests/fuzz/fuzz_graph.c.
 */
#include "config.h"

#include <ctype.h>
#include <json-c/json.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr/addr.h"
#include "graph.h"
#include "util/util.h"

/* The MIME ----------------------------------------------------------------------------- */

struct rcpt_set {
	struct addr *a;
	bool *covered; /* named by a To or Cc field we send */
	size_t n;
};

static bool
in_set(const struct rcpt_set *rs, const struct addr *a, size_t *at)
{
	size_t i;

	for (i = 0; i < rs->n; i++)
		if (addr_equal(&rs->a[i], a)) {
			*at = i;
			return true;
		}
	return false;
}

/* unstuff - one wire line as the message has it: the leading dot of a
 * dot-stuffed line goes */
static void
put_line(struct sbuf *out, const char *line, size_t len)
{
	if (len > 0 && line[0] == '.')
		line++, len--;
	sbuf_add(out, line, len);
}

static void
note_add(char *note, size_t size, const char *what, const char *addr)
{
	if (note[0] != '\0')
		m3_strlcat(note, "; ", size);
	m3_strlcat(note, what, size);
	if (addr != NULL) {
		m3_strlcat(note, " ", size);
		m3_strlcat(note, addr, size);
	}
}

/* folded_cleanly - every CR and LF of a field's value is a CRLF that ends
 * it or folds it (is followed by a space or a tab) */
static bool
folded_cleanly(const char *field, size_t from, size_t flen)
{
	size_t i;

	for (i = from; i < flen; i++)
		if (field[i] == '\r' || field[i] == '\n') {
			if (field[i] == '\n' || i + 1 >= flen || field[i + 1] != '\n')
				return false;
			i++;
			if (i + 1 < flen && field[i + 1] != ' ' && field[i + 1] != '\t')
				return false;
		}
	return true;
}

/*
 * recipient_field - a To or Cc field (name and raw value with its CRLFs)
 * as it goes to Graph: as written, rewritten to the envelope recipients
 * it names, or not at all.
 */
static void
recipient_field(struct sbuf *out, const char *field, size_t flen, size_t colon, struct rcpt_set *rs,
                struct mailbox *mb, char *note, size_t note_size)
{
	char value[ADDR_HEADER_MAX + 1], name[16], text[ADDR_DISPLAY_MAX * 2 + ADDR_TEXT_MAX + 8];
	struct addr_err e;
	size_t i, n = 0, v = 0, kept = 0, at;
	bool all;

	m3_strlcpy(name, m3_ncasecmp(field, "To", 2) == 0 ? "To" : "Cc", sizeof(name));
	for (i = colon + 1; i < flen && v < sizeof(value) - 1; i++)
		if (field[i] != '\r' && field[i] != '\n')
			value[v++] = field[i];
	value[v] = '\0';
	if (i < flen || addr_parse_list(value, v, mb, GRAPH_MAILBOXES, &n, &e) < 0) {
		note_add(note, note_size, name, "field that does not parse: dropped");
		return;
	}
	/* Kept as written only if every address in it is an envelope
	 * recipient written in its plain form: an obsolete one ("alice
	 * @contoso.com", a comment inside, a quoted-pair) or a bare CR may not
	 * parse the same at Graph, whose recipients come from these fields
	 * alone. */
	all = folded_cleanly(field, colon + 1, flen);
	for (i = 0; i < n && all; i++) {
		char a[ADDR_TEXT_MAX + 1];
		if (!in_set(rs, &mb[i].addr, &at) || addr_format(&mb[i].addr, a, sizeof(a)) < 0 ||
		    strcasestr(value, a) == NULL)
			all = false;
	}
	if (all) {
		for (i = 0; i < n; i++)
			if (in_set(rs, &mb[i].addr, &at))
				rs->covered[at] = true;
		sbuf_add(out, field, flen);
		return;
	}
	for (i = 0; i < n; i++) {
		if (!in_set(rs, &mb[i].addr, &at)) {
			char a[ADDR_TEXT_MAX + 1];
			addr_format(&mb[i].addr, a, sizeof(a));
			note_add(note, note_size, "not in the envelope, left out:", a);
			continue;
		}
		if (addr_format_mailbox(mb[i].display[0] ? mb[i].display : NULL, &mb[i].addr, text,
		                        sizeof(text)) < 0)
			continue; /* cannot happen: parsed within the same bounds */
		rs->covered[at] = true;
		if (kept++ == 0)
			sbuf_addf(out, "%s: ", name);
		else
			sbuf_add(out, ",\r\n ", 4);
		sbuf_adds(out, text);
	}
	if (kept > 0)
		sbuf_add(out, "\r\n", 2);
}

static bool
field_is(const char *field, size_t colon, const char *name)
{
	size_t n = strlen(name);

	while (colon > 0 && (field[colon - 1] == ' ' || field[colon - 1] == '\t'))
		colon--;
	return colon == n && m3_ncasecmp(field, name, n) == 0;
}

int
graph_mime(const char *wire, size_t len, const char *const *rcpts, size_t n, struct sbuf *out,
           char *note, size_t note_size)
{
	struct rcpt_set rs = {calloc(n ? n : 1, sizeof(struct addr)), calloc(n ? n : 1, 1), n};
	struct mailbox *mb = calloc(GRAPH_MAILBOXES, sizeof(*mb));
	size_t p = 0, i, bcc = 0;
	int rc = -1;

	if (note_size > 0)
		note[0] = '\0';
	if (rs.a == NULL || rs.covered == NULL || mb == NULL)
		goto out;
	for (i = 0; i < n; i++) {
		struct addr_err e;
		if (addr_parse_path(rcpts[i], strlen(rcpts[i]), false, &rs.a[i], &e) < 0)
			goto out;
	}
	if (len >= 3 && memcmp(wire + len - 3, ".\r\n", 3) == 0 &&
	    (len == 3 || wire[len - 4] == '\n'))
		len -= 3; /* the final dot */
	/* The header section: fields, each with its continuation lines. */
	while (p < len) {
		size_t e = p, colon;
		const char *c;
		if (wire[p] == '\r' || wire[p] == '\n')
			break; /* the blank line */
		do {
			const char *nl = memchr(wire + e, '\n', len - e);
			e = nl ? (size_t)(nl - wire) + 1 : len;
		} while (e < len && (wire[e] == ' ' || wire[e] == '\t'));
		c = memchr(wire + p, ':', e - p);
		colon = c ? (size_t)(c - (wire + p)) : 0;
		if (c != NULL &&
		    (field_is(wire + p, colon, "To") || field_is(wire + p, colon, "Cc")))
			recipient_field(out, wire + p, e - p, colon, &rs, mb, note, note_size);
		else if (c != NULL && field_is(wire + p, colon, "Bcc"))
			note_add(note, note_size, "the message's Bcc field dropped", NULL);
		else
			put_line(out, wire + p, e - p);
		p = e;
	}
	/* Envelope recipients no To or Cc field names: Bcc, one a line. */
	for (i = 0; i < n; i++) {
		char a[ADDR_TEXT_MAX + 1];
		if (rs.covered[i])
			continue;
		addr_format(&rs.a[i], a, sizeof(a));
		sbuf_addf(out, "%s%s", bcc++ == 0 ? "Bcc: " : ",\r\n ", a);
	}
	if (bcc > 0)
		sbuf_add(out, "\r\n", 2);
	/* The body, line by line, unstuffed. */
	while (p < len) {
		const char *nl = memchr(wire + p, '\n', len - p);
		size_t e = nl ? (size_t)(nl - wire) + 1 : len;
		put_line(out, wire + p, e - p);
		p = e;
	}
	rc = out->failed ? -1 : 0;
out:
	free(rs.a);
	free(rs.covered);
	free(mb);
	return rc;
}

/* The answer ------------------------------------------------------------------------------ */

void
graph_printable(char *dst, size_t size, const char *s, size_t n)
{
	size_t i, o = 0;

	for (i = 0; i < n && o + 1 < size; i++)
		dst[o++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : ' ';
	if (size > 0)
		dst[o] = '\0';
}

void
graph_header(const char *line, size_t len, struct graph_answer *a)
{
	static const struct {
		const char *name;
		size_t off, size;
	} ids[] = {
	    {"request-id", offsetof(struct graph_answer, request_id), sizeof(a->request_id)},
	    {"client-request-id", offsetof(struct graph_answer, client_id), sizeof(a->client_id)},
	};
	const char *colon = memchr(line, ':', len);
	size_t n, i, v;

	if (colon == NULL)
		return;
	n = (size_t)(colon - line);
	v = n + 1;
	while (v < len && (line[v] == ' ' || line[v] == '\t'))
		v++;
	while (len > v && (line[len - 1] == '\r' || line[len - 1] == '\n' || line[len - 1] == ' '))
		len--;
	for (i = 0; i < NELEM(ids); i++)
		if (strlen(ids[i].name) == n && m3_ncasecmp(line, ids[i].name, n) == 0)
			graph_printable((char *)a + ids[i].off, ids[i].size, line + v, len - v);
	if (n == 11 && m3_ncasecmp(line, "Retry-After", 11) == 0) {
		/* Seconds only; an HTTP date (Graph sends none) is not believed. */
		unsigned long s = 0;
		size_t k;
		for (k = v; k < len && isdigit((unsigned char)line[k]) && s <= GRAPH_RETRY_MAX; k++)
			s = s * 10 + (unsigned long)(line[k] - '0');
		if (k == len && k > v) {
			a->retry_after = (unsigned)(s > GRAPH_RETRY_MAX ? GRAPH_RETRY_MAX : s);
			a->has_retry_after = true;
		}
	}
}

void
graph_body(const char *body, size_t len, struct graph_answer *a)
{
	json_tokener *tok;
	json_object *j, *err, *v;

	if (len == 0 || len > GRAPH_BODY_MAX || memchr(body, '\0', len) != NULL)
		return;
	tok = json_tokener_new_ex(16);
	if (tok == NULL)
		return;
	j = json_tokener_parse_ex(tok, body, (int)len);
	json_tokener_free(tok);
	if (j == NULL)
		return;
	if (json_object_is_type(j, json_type_object) &&
	    json_object_object_get_ex(j, "error", &err) &&
	    json_object_is_type(err, json_type_object)) {
		if (json_object_object_get_ex(err, "code", &v) &&
		    json_object_is_type(v, json_type_string))
			graph_printable(a->code, sizeof(a->code), json_object_get_string(v),
			                (size_t)json_object_get_string_len(v));
		if (json_object_object_get_ex(err, "message", &v) &&
		    json_object_is_type(v, json_type_string))
			graph_printable(a->message, sizeof(a->message), json_object_get_string(v),
			                (size_t)json_object_get_string_len(v));
	}
	json_object_put(j);
}

static const struct graph_map {
	long status;      /* 0: any */
	const char *code; /* NULL: any */
	int smtp;
	const char *xcode;
	const char *hint;
} graph_map[] = {
    {202, NULL, 250, "2.0.0", NULL},
    {429, NULL, 451, "4.7.500",
     "Graph throttles the app for this mailbox (4 requests at once, 10,000 in 10 minutes): "
     "every transport for it waits out Retry-After"},
    {503, NULL, 451, "4.7.500", "Graph is busy: every transport for the mailbox waits"},
    {504, NULL, 451, "4.7.500", "Graph is busy: every transport for the mailbox waits"},
    {413, NULL, 552, "5.3.4", NULL},
    {400, "ErrorMessageSizeExceeded", 552, "5.3.4", NULL},
    {400, "ErrorMimeContentInvalidBase64String", 554, "5.6.0", NULL},
    {400, "ErrorInvalidRecipients", 550, "5.1.3", NULL},
    {401, NULL, 451, "4.7.8",
     "Graph refused the token: the app needs the application permission Mail.Send "
     "(Microsoft Graph) with admin consent, and the tenant's graph_endpoint must be the "
     "cloud the token is for"},
    {403, "ErrorSendAsDenied", 451, "4.7.60",
     "the mailbox may not send as this address: Add-RecipientPermission -Identity <address> "
     "-Trustee <mailbox> -AccessRights SendAs, and list it in the mailbox's send_as"},
    {403, NULL, 451, "4.7.8",
     "Graph denied the app this mailbox: grant Mail.Send (application) with admin consent, "
     "and check the application access policy or RBAC for Applications scope that limits "
     "the app to some mailboxes (Test-ApplicationAccessPolicy)"},
    {404, NULL, 451, "4.3.5",
     "Graph does not know this mailbox in the tenant: check the mailbox's address and that "
     "it has an Exchange Online licence"},
    {0, NULL, 451, "4.4.0", NULL},
};

const char *
graph_reply(const struct graph_answer *a, struct smtp_reply *r)
{
	const struct graph_map *m = NULL;
	size_t i;

	for (i = 0; i < NELEM(graph_map) && m == NULL; i++)
		if ((graph_map[i].status == 0 || graph_map[i].status == a->status) &&
		    (graph_map[i].code == NULL || strcmp(graph_map[i].code, a->code) == 0))
			m = &graph_map[i];
	memset(r, 0, sizeof(*r));
	r->code = m->smtp;
	m3_strlcpy(r->xcode, m->xcode, sizeof(r->xcode));
	if (a->status == 202)
		snprintf(r->text, sizeof(r->text), "%s Accepted by Microsoft Graph (request-id %s)",
		         m->xcode, a->request_id[0] ? a->request_id : "none");
	else
		snprintf(r->text, sizeof(r->text), "%s HTTP %ld %s%s%s%s (request-id %s)", m->xcode,
		         a->status, a->code[0] ? a->code : "(no error code)",
		         a->message[0] ? ": " : "", a->message,
		         a->has_retry_after && a->status != 202 ? "; Retry-After given" : "",
		         a->request_id[0] ? a->request_id : "none");
	return m->hint;
}
