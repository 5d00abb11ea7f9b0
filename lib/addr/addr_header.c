/*
 * addr_header.c - RFC 5322 address lists (From, Sender, Reply-To): name-addr,
 * addr-spec, groups, comments, quoted strings and the obs- forms real
 * mailers still send, with RFC 6532 UTF-8 and RFC 2047 encoded words kept
 * as opaque words (addr.h).  The address is only ever taken from
 * addr-spec or angle-addr syntax: an "@" in a display name is text.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "addr_lex.h"
#include "util/util.h"

/* Headers (RFC 5322) ------------------------------------------------------- */

static int
skip_comment(struct cur *c)
{
	struct val v = {c->comment, 0, ADDR_DISPLAY_MAX, "comment too long"};
	int depth = 0;

	c->comment[0] = '\0';
	for (;;) {
		int ch = ax_peek(c);
		unsigned char b;
		if (ch < 0)
			return ax_fail(c, "comment: missing ')'");
		if (ch == '(') {
			if (++depth > COMMENT_DEPTH_MAX)
				return ax_fail(c, "comment: nested too deeply");
			c->p++;
			if (depth == 1)
				continue;
		} else if (ch == ')') {
			c->p++;
			if (--depth == 0)
				return 0;
		} else if (ch == '\\') {
			c->p++;
			ch = ax_peek(c);
			if (ch < 0)
				return ax_fail(c, "comment: missing ')'");
			if (ch >= 0x80)
				continue; /* the UTF-8 check happens next round */
			c->p++;
		} else if (ch >= 0x80) {
			const unsigned char *s = c->p;
			if (ax_utf8_step(c) < 0)
				return -1;
			if (v.len + (size_t)(c->p - s) <= v.cap)
				ax_val_add(c, &v, s, (size_t)(c->p - s));
			continue;
		} else if (ch == '\r' || ch == '\n' || ch == '\t' || ch == ' ') {
			c->p++;
			ch = ' ';
		} else if (ch < 0x20 || ch == 0x7f) {
			return ax_fail_char(c, "comment");
		} else {
			c->p++;
		}
		/* Keep the text of the comment (truncated) as a display-name fallback. */
		b = (unsigned char)ch;
		if (depth >= 1 && v.len < v.cap)
			ax_val_add(c, &v, &b, 1);
	}
}

/* skip_cfws - whitespace, folds and comments */
static int
skip_cfws(struct cur *c)
{
	for (;;) {
		int ch = ax_peek(c);
		if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n')
			c->p++;
		else if (ch == '(') {
			if (skip_comment(c) < 0)
				return -1;
		} else
			return 0;
	}
}

/*
 * encoded_word_len - if an RFC 2047 encoded word starts at the cursor, its
 * length, else 0.  Encoded words are opaque in display names: a hostile one
 * may hold specials such as "@" and must not end the phrase early.
 */
static size_t
encoded_word_len(const struct cur *c)
{
	const unsigned char *p = c->p, *e = c->end;
	int q = 0;

	if (e - p < 8 || p[0] != '=' || p[1] != '?')
		return 0;
	for (p += 2; p<e && * p> 0x20 && *p < 0x7f; p++) {
		if (*p == '?') {
			if (q == 2 && p + 1 < e && p[1] == '=')
				return (size_t)(p + 2 - c->p);
			q++;
		}
	}
	return 0;
}

/* read_phrase - display-name words; returns the number of words read */
static int
read_phrase(struct cur *c, struct val *disp)
{
	int words = 0;

	for (;;) {
		int ch;
		size_t ew;
		if (skip_cfws(c) < 0)
			return -1;
		ch = ax_peek(c);
		ew = encoded_word_len(c);
		if (ew == 0 && ch != '"' && ch != '.' && !(ch >= 0x80) &&
		    !(ch >= 0 && ax_is_atext(ch)))
			return words;
		if (words > 0 && ch != '.' && ax_val_add(c, disp, " ", 1) < 0)
			return -1;
		if (ew > 0) {
			if (ax_val_add(c, disp, c->p, ew) < 0)
				return -1;
			c->p += ew;
		} else if (ch == '"') {
			if (ax_read_qstring(c, disp, false) < 0)
				return -1;
		} else if (ch == '.') { /* obs-phrase */
			c->p++;
			if (ax_val_add(c, disp, ".", 1) < 0)
				return -1;
		} else if (ax_read_atom(c, disp) < 0) {
			return -1;
		}
		words++;
	}
}

/*
 * read_header_domain - dot-atom or domain literal, allowing the obs-domain
 * form with CFWS around the dots; the result is then held to the same
 * rules as an envelope domain.
 */
static int
read_header_domain(struct cur *c, char *out)
{
	char tmp[ADDR_DOMAIN_MAX + 1];
	struct cur v;
	size_t n = 0;

	if (ax_peek(c) == '[')
		return ax_parse_literal(c, out);
	for (;;) {
		const unsigned char *s = c->p;
		size_t len;
		while (c->p < c->end && (*c->p >= 0x80 || ax_is_atext(*c->p)))
			c->p++;
		len = (size_t)(c->p - s);
		if (len == 0)
			return ax_fail_char(c, "domain");
		if (n + len + 1 > ADDR_DOMAIN_MAX)
			return ax_fail(c, "domain: longer than 255 octets");
		memcpy(tmp + n, s, len);
		n += len;
		if (skip_cfws(c) < 0)
			return -1;
		if (ax_peek(c) != '.')
			break;
		c->p++;
		tmp[n++] = '.';
		if (skip_cfws(c) < 0)
			return -1;
	}
	tmp[n] = '\0';
	v.base = v.p = (const unsigned char *)tmp;
	v.end = v.base + n;
	v.err = c->err;
	if (ax_parse_domain_at(&v, out) < 0 || v.p != v.end) {
		if (v.p != v.end)
			ax_fail_char(&v, "domain");
		if (c->err != NULL)
			c->err->off = (size_t)(c->p - c->base);
		return -1;
	}
	return 0;
}

/* read_addr_spec - local-part "@" domain, with the obs- forms (CFWS around words) */
static int
read_addr_spec(struct cur *c, struct addr *out)
{
	char value[ADDR_LOCAL_MAX + 1];
	struct val v = {value, 0, ADDR_LOCAL_MAX, "local part longer than 64 octets"};

	value[0] = '\0';
	for (;;) {
		if (skip_cfws(c) < 0)
			return -1;
		if (ax_peek(c) == '"') {
			if (ax_read_qstring(c, &v, false) < 0)
				return -1;
		} else if (ax_read_atom(c, &v) < 0) {
			return -1;
		}
		if (skip_cfws(c) < 0)
			return -1;
		if (ax_peek(c) != '.')
			break;
		c->p++;
		if (ax_val_add(c, &v, ".", 1) < 0)
			return -1;
	}
	if (ax_peek(c) < 0)
		return ax_fail(c, "missing '@domain'");
	if (ax_peek(c) != '@')
		return ax_fail_char(c, "local part");
	if (ax_canon_local(c, v.buf, v.len, out->local) < 0)
		return -1;
	c->p++;
	if (skip_cfws(c) < 0)
		return -1;
	return read_header_domain(c, out->domain);
}

/* read_angle_addr - "<" [obs-route] addr-spec ">" */
static int
read_angle_addr(struct cur *c, struct addr *out)
{
	c->p++; /* '<' */
	if (skip_cfws(c) < 0)
		return -1;
	if (ax_peek(c) == '>')
		return ax_fail(c, "empty address <>");
	if (ax_peek(c) == '@') { /* obs-route: @a,@b: */
		while (c->p < c->end && *c->p != ':' && *c->p != '>')
			c->p++;
		if (ax_peek(c) != ':')
			return ax_fail(c, "route without ':'");
		c->p++;
	}
	if (read_addr_spec(c, out) < 0)
		return -1;
	if (skip_cfws(c) < 0)
		return -1;
	if (ax_peek(c) != '>')
		return ax_fail_char(c, "address: missing '>'");
	c->p++;
	return 0;
}

struct list_out {
	struct mailbox *mb;
	size_t cap, n;
};

/* read_mailbox - one name-addr or addr-spec (not a group) */
static int
read_mailbox(struct cur *c, struct list_out *lo, bool *group_start, struct val *disp)
{
	const unsigned char *start;
	struct addr a;
	int words;

	if (skip_cfws(c) < 0)
		return -1;
	start = c->p;
	disp->len = 0;
	disp->buf[0] = '\0';
	words = read_phrase(c, disp);
	if (words < 0)
		return -1;
	if (ax_peek(c) == '<') {
		if (read_angle_addr(c, &a) < 0)
			return -1;
	} else if (ax_peek(c) == ':' && words > 0 && group_start != NULL) {
		c->p++;
		*group_start = true;
		return 0;
	} else if (ax_peek(c) == '@' && words > 0) {
		/* The words were a local part: parse again as addr-spec. */
		c->p = start;
		disp->len = 0;
		disp->buf[0] = '\0';
		c->comment[0] = '\0';
		if (read_addr_spec(c, &a) < 0)
			return -1;
		if (skip_cfws(c) < 0)
			return -1;
		/* "user@example.com (Name)": old-style display name in a comment */
		if (c->comment[0] != '\0')
			ax_val_add(c, disp, c->comment, strlen(c->comment));
	} else if (words == 0) {
		return ax_fail_char(c, "expected an address");
	} else {
		return ax_fail_char(c, "address without '@domain'");
	}
	if (lo->n >= lo->cap) {
		ax_fail(c, "too many addresses");
		if (c->err != NULL)
			c->err->code = ADDR_ETOOMANY; /* decided on, never the text */
		return -1;
	}
	lo->mb[lo->n].addr = a;
	m3_strlcpy(lo->mb[lo->n].display, disp->buf, sizeof(lo->mb[0].display));
	lo->n++;
	return skip_cfws(c);
}

int
addr_parse_list(const char *s, size_t len, struct mailbox *out, size_t cap, size_t *n,
                struct addr_err *err)
{
	struct cur c = {(const unsigned char *)s, (const unsigned char *)s,
	                (const unsigned char *)s + len, err, ""};
	struct list_out lo = {out, cap, 0};
	char dbuf[ADDR_DISPLAY_MAX + 1];
	struct val disp = {dbuf, 0, ADDR_DISPLAY_MAX, "display name too long"};

	*n = 0;
	if (len > ADDR_HEADER_MAX)
		return ax_fail(&c, "header value too long");
	if (memchr(s, '\0', len) != NULL) {
		c.p = memchr(s, '\0', len);
		return ax_fail(&c, "NUL byte");
	}
	for (;;) {
		bool group = false;

		if (skip_cfws(&c) < 0)
			return -1;
		if (ax_peek(&c) == ',') { /* obs-addr-list: empty element */
			c.p++;
			continue;
		}
		if (c.p == c.end)
			break;
		if (read_mailbox(&c, &lo, &group, &disp) < 0)
			return -1;
		if (group) {
			for (;;) {
				if (skip_cfws(&c) < 0)
					return -1;
				if (ax_peek(&c) == ';') {
					c.p++;
					break;
				}
				if (ax_peek(&c) == ',') {
					c.p++;
					continue;
				}
				if (c.p == c.end)
					return ax_fail(&c, "group: missing ';'");
				if (read_mailbox(&c, &lo, NULL, &disp) < 0)
					return -1;
				if (ax_peek(&c) != ',' && ax_peek(&c) != ';')
					return ax_fail_char(&c, "group");
			}
			if (skip_cfws(&c) < 0)
				return -1;
		}
		if (c.p == c.end)
			break;
		if (ax_peek(&c) != ',')
			return ax_fail_char(&c, "after address");
		c.p++;
	}
	*n = lo.n;
	return 0;
}
