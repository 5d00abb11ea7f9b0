/*
 * message.c - read the message, find its header fields, and build what
 * goes on the wire (see message.h).
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "message.h"
#include "policy/route.h"
#include "util/sbuf.h"
#include "util/util.h"

/* line_end - the end of the line at p (after its LF, or end) */
static size_t
line_end(const char *buf, size_t len, size_t p)
{
	const char *nl = memchr(buf + p, '\n', len - p);
	return nl != NULL ? (size_t)(nl - buf) + 1 : len;
}

/* content_len - the line without its CR LF / LF */
static size_t
content_len(const char *line, size_t l)
{
	if (l > 0 && line[l - 1] == '\n')
		l--;
	if (l > 0 && line[l - 1] == '\r')
		l--;
	return l;
}

/* keep_subject - the Subject for the report: unfolded, control characters out */
static void
keep_subject(struct message *m, const char *v, size_t len)
{
	size_t i, o = 0;

	for (i = 0; i < len && o + 1 < sizeof(m->subject); i++) {
		unsigned char c = (unsigned char)v[i];
		if (c == '\r' || c == '\n')
			continue;
		if (o == 0 && (c == ' ' || c == '\t'))
			continue;
		m->subject[o++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
	}
	while (o > 0 && m->subject[o - 1] == ' ')
		o--;
	m->subject[o] = '\0';
}

static int
add_field(struct message *m, size_t off, size_t len, enum hdr_kind kind, size_t *cap)
{
	if (m->n_fields == *cap) {
		size_t ncap = *cap ? *cap * 2 : 32;
		struct field *f;
		if (ncap > MSG_FIELDS_MAX)
			return -1;
		f = realloc(m->fields, ncap * sizeof(*f));
		if (f == NULL)
			return -1;
		m->fields = f;
		*cap = ncap;
	}
	m->fields[m->n_fields].off = off;
	m->fields[m->n_fields].len = len;
	m->fields[m->n_fields].kind = kind;
	m->n_fields++;
	return 0;
}

int
message_parse(char *buf, size_t len, struct message *m, struct msg_err *err)
{
	size_t p = 0, cap = 0, i;

	memset(m, 0, sizeof(*m));
	m->raw = buf;
	m->raw_len = len;
	m->body_off = len;
	for (i = 0; i < len; i++)
		if ((unsigned char)buf[i] >= 0x80) {
			m->eightbit = true;
			break;
		}
	/* An mbox "From " line first (pipe(8) with flag F, a Sendmail mailer
	 * without F=n) is the local envelope, not a header field: Microsoft
	 * would take it for a broken header.  It is left out. */
	if (len >= 5 && memcmp(buf, "From ", 5) == 0)
		p = line_end(buf, len, 0);
	m->head_off = p;
	/* The header section: fields up to the first empty line. */
	while (p < len) {
		size_t e = line_end(buf, len, p), start = p, colon, nlen;
		const char *line = buf + p;
		enum hdr_kind kind = HDR_OTHER;

		if (content_len(line, e - p) == 0) {
			m->body_off = p;
			break;
		}
		/* The field runs on over continuation lines. */
		while (e < len && (buf[e] == ' ' || buf[e] == '\t'))
			e = line_end(buf, len, e);
		for (colon = start; colon < e && buf[colon] != ':' && buf[colon] != '\n'; colon++)
			;
		nlen = colon - start;
		if (colon < e && buf[colon] == ':' && line[0] != ' ' && line[0] != '\t') {
			/* Name and colon: trailing blanks before the colon are obsolete
			 * syntax (RFC 5322 4.5) but still a name. */
			while (nlen > 0 && (line[nlen - 1] == ' ' || line[nlen - 1] == '\t'))
				nlen--;
			kind = hdr_kind(line, nlen);
			if (kind != HDR_OTHER &&
			    hdrset_add(&m->hdr, kind, buf + colon + 1, e - colon - 1) < 0)
				goto nomem;
			if (nlen == 7 && m3_ncasecmp(line, "Subject", 7) == 0 &&
			    m->subject[0] == '\0')
				keep_subject(m, buf + colon + 1, e - colon - 1);
		}
		for (i = start; i < e; i++)
			if ((unsigned char)buf[i] >= 0x80)
				m->utf8_headers = true;
		if (add_field(m, start, e - start, kind, &cap) < 0) {
			return M3_FAIL(err, MSG_ENOMEM,
			               "more than %d header fields, or out of memory",
			               MSG_FIELDS_MAX);
		}
		p = e;
	}
	return 0;
nomem:
	return M3_FAIL(err, MSG_ENOMEM, "out of memory");
}

/* put_lines - text as wire lines: CRLF ends, a leading dot doubled */
static void
put_lines(struct sbuf *w, const char *text, size_t len, unsigned long *size)
{
	size_t p = 0;

	while (p < len) {
		size_t e = line_end(text, len, p), c = content_len(text + p, e - p);
		if (c > 0 && text[p] == '.')
			sbuf_add(w, ".", 1); /* dot-stuffing (RFC 5321 4.5.2) */
		sbuf_add(w, text + p, c);
		sbuf_add(w, "\r\n", 2);
		*size += c + 2;
		p = e;
	}
}

/*
 * put_field - "Name: value" as wire lines.  A value the policy made is one
 * line unless it is longer than RFC 5322's 998 octets: then it is folded
 * before a blank.  CR and LF in it (there should be none) become blanks.
 */
static void
put_field(struct sbuf *w, const char *name, const char *value, unsigned long *size)
{
	struct sbuf f;
	size_t start = 0, i;

	sbuf_init(&f, ADDR_HEADER_MAX * 2);
	if (sbuf_addf(&f, "%s: %s", name, value) < 0) {
		w->failed = true;
		sbuf_free(&f);
		return;
	}
	for (i = 0; i < f.len; i++)
		if (f.s[i] == '\r' || f.s[i] == '\n')
			f.s[i] = ' ';
	while (f.len - start > 998) {
		size_t cut = 0, j;
		for (j = start + 998; j > start + 1; j--)
			if (f.s[j] == ' ' || f.s[j] == '\t') {
				cut = j;
				break;
			}
		if (cut == 0)
			break; /* no blank to fold at: one long line */
		put_lines(w, f.s + start, cut - start, size);
		start = cut; /* the blank begins the continuation line */
	}
	put_lines(w, f.s + start, f.len - start, size);
	sbuf_free(&f);
}

static const struct edit *
find_edit(const struct edits *e, enum edit_op op, enum hdr_kind kind)
{
	size_t i;

	for (i = 0; e != NULL && i < e->n; i++)
		if (e->e[i].op == op && e->e[i].header != NULL &&
		    hdr_kind(e->e[i].header, strlen(e->e[i].header)) == kind)
			return &e->e[i];
	return NULL;
}

static bool
dropped(const struct edits *e, enum hdr_kind kind)
{
	size_t i;

	if (kind == HDR_ROUTE)
		return true; /* never sent, edits or not */
	for (i = 0; e != NULL && i < e->n; i++)
		if (e->e[i].op == EDIT_HEADER_DROP && e->e[i].header != NULL &&
		    hdr_kind(e->e[i].header, strlen(e->e[i].header)) == kind)
			return true;
	return false;
}

int
message_wire(struct message *m, const struct edits *e, struct msg_err *err)
{
	const struct edit *set_from = find_edit(e, EDIT_HEADER_SET, HDR_FROM);
	bool from_done = false;
	struct sbuf w;
	size_t i;

	free(m->wire);
	m->wire = NULL;
	m->size = 0;
	/* Worst case: every line "." (doubled) and LF becoming CRLF, plus
	 * the fields the edits add. */
	sbuf_init(&w, m->raw_len * 2 + EDITS_MAX * (ADDR_HEADER_MAX * 2 + 16) + 8);
	for (i = 0; i < m->n_fields; i++) {
		const struct field *f = &m->fields[i];
		if (dropped(e, f->kind))
			continue;
		if (f->kind == HDR_FROM && set_from != NULL && !from_done) {
			put_field(&w, "From", set_from->value, &m->size);
			from_done = true;
			continue;
		}
		put_lines(&w, m->raw + f->off, f->len, &m->size);
	}
	for (i = 0; e != NULL && i < e->n; i++)
		if (e->e[i].op == EDIT_HEADER_ADD)
			put_field(&w, e->e[i].header, e->e[i].value, &m->size);
	put_lines(&w, m->raw + m->body_off, m->raw_len - m->body_off, &m->size);
	sbuf_add(&w, ".\r\n", 3);
	if (w.failed) {
		sbuf_free(&w);
		return M3_FAIL(err, MSG_ENOMEM, "out of memory building the message");
	}
	m->wire = w.s;
	m->wire_len = w.len;
	return 0;
}

int
message_report_headers(const struct message *m, int (*fn)(void *, const char *, size_t), void *arg)
{
	size_t i;

	for (i = 0; i < m->n_fields; i++)
		if (m->fields[i].kind != HDR_ROUTE &&
		    fn(arg, m->raw + m->fields[i].off, m->fields[i].len) < 0)
			return -1;
	return 0;
}

int
message_read(int fd, size_t max, struct message *m, struct msg_err *err)
{
	struct sbuf b;
	char chunk[65536];

	memset(m, 0, sizeof(*m));
	sbuf_init(&b, max);
	for (;;) {
		ssize_t r = read(fd, chunk, sizeof(chunk));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			sbuf_free(&b);
			return M3_FAIL(err, MSG_EREAD, "reading the message: %s", strerror(errno));
		}
		if (r == 0)
			break;
		if (sbuf_add(&b, chunk, (size_t)r) < 0) {
			bool big = (size_t)r > b.max - b.len;
			sbuf_free(&b);
			if (big)
				return M3_FAIL(
				    err, MSG_ETOOLARGE,
				    "message larger than the configured limit of %zu bytes", max);
			return M3_FAIL(err, MSG_ENOMEM, "out of memory reading the message");
		}
	}
	if (b.s == NULL && sbuf_add(&b, "", 0) < 0)
		return M3_FAIL(err, MSG_ENOMEM, "out of memory");
	if (message_parse(b.s, b.len, m, err) < 0) {
		message_free(m);
		return -1;
	}
	return 0;
}

void
message_free(struct message *m)
{
	free(m->raw);
	free(m->fields);
	free(m->wire);
	hdrset_clear(&m->hdr);
	memset(m, 0, sizeof(*m));
}
