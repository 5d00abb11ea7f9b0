/*
 * addr.c - envelope and header address parsing, canonical forms, patterns.
 *
 * Two grammars share one cursor:
 *  - RFC 5321 Path (Mailbox = Local-part "@" ( Domain / address-literal )),
 *    strict, with RFC 6531 UTF-8;
 *  - RFC 5322 address-list (name-addr, addr-spec, groups, comments, quoted
 *    strings, the obs- forms that real mailers still send), with RFC 6532
 *    UTF-8 and RFC 2047 encoded words kept as opaque words.
 *
 * The classic trap is an "@" inside a display name:
 *	From: "ceo@contoso.com" <attacker@example.net>
 * The address is the one in angle brackets; the display name is text.  The
 * parser only ever takes the address from addr-spec or angle-addr syntax.
 */
#include "config.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "addr.h"
#include "util/util.h"

#define COMMENT_DEPTH_MAX 16

struct cur {
	const unsigned char *base, *p, *end;
	struct addr_err *err;
	char comment[ADDR_DISPLAY_MAX + 1]; /* last comment seen, for "addr (Name)" */
};

static int
fail(struct cur *c, const char *msg)
{
	if (c->err != NULL) {
		c->err->off = (size_t)(c->p - c->base);
		c->err->too_many = false;
		m3_strlcpy(c->err->msg, msg, sizeof(c->err->msg));
	}
	return -1;
}

static int
fail_char(struct cur *c, const char *what)
{
	char msg[96];

	if (c->p >= c->end)
		snprintf(msg, sizeof(msg), "%s: unexpected end", what);
	else if (*c->p >= 0x21 && *c->p < 0x7f)
		snprintf(msg, sizeof(msg), "%s: unexpected '%c'", what, *c->p);
	else
		snprintf(msg, sizeof(msg), "%s: unexpected byte 0x%02x", what, *c->p);
	return fail(c, msg);
}

static inline int
peek(const struct cur *c)
{
	return c->p < c->end ? *c->p : -1;
}

static bool
is_atext(int ch)
{
	if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
		return true;
	return ch > 0 && strchr("!#$%&'*+-/=?^_`{|}~", ch) != NULL;
}

/*
 * utf8_step - if the cursor is at a non-ASCII byte, step over one valid
 * UTF-8 sequence and return its length; 0 if not at one; -1 if invalid.
 */
static int
utf8_step(struct cur *c)
{
	size_t n;

	if (c->p >= c->end || *c->p < 0x80)
		return 0;
	n = m3_utf8_seq(c->p, (size_t)(c->end - c->p));
	if (n == 0)
		return fail(c, "invalid UTF-8");
	c->p += n;
	return (int)n;
}

/* Append bytes to a bounded value buffer. */
struct val {
	char *buf;
	size_t len, cap; /* cap excludes the NUL */
	const char *toolong;
};

static int
val_add(struct cur *c, struct val *v, const void *p, size_t n)
{
	if (v->len + n > v->cap)
		return fail(c, v->toolong);
	memcpy(v->buf + v->len, p, n);
	v->len += n;
	v->buf[v->len] = '\0';
	return 0;
}

/* Domains (shared) ------------------------------------------------------ */

static int
parse_literal(struct cur *c, char *out)
{
	const unsigned char *start = c->p;
	char tmp[64];
	unsigned char bin[16];
	size_t n;

	c->p++; /* '[' */
	while (c->p < c->end && *c->p != ']') {
		if (*c->p < 0x21 || *c->p > 0x7e || *c->p == '[' || *c->p == '\\')
			return fail_char(c, "address literal");
		c->p++;
	}
	if (c->p >= c->end)
		return fail(c, "address literal: missing ']'");
	n = (size_t)(c->p - start - 1);
	if (n == 0 || n >= sizeof(tmp))
		return fail(c, "address literal: bad length");
	memcpy(tmp, start + 1, n);
	tmp[n] = '\0';
	if (m3_ncasecmp(tmp, "IPv6:", 5) == 0) {
		if (inet_pton(AF_INET6, tmp + 5, bin) != 1)
			return fail(c, "address literal: bad IPv6 address");
	} else if (inet_pton(AF_INET, tmp, bin) != 1) {
		return fail(c, "address literal: not an IPv4 or IPv6: address");
	}
	c->p++; /* ']' */
	memcpy(out, start, n + 2);
	out[n + 2] = '\0';
	return 0;
}

/*
 * parse_domain_at - a domain name or address literal at the cursor.  Labels
 * are letters, digits, hyphens (not at either end) and UTF-8 (U-labels);
 * underscores are accepted because devices use them in host names.
 */
static int
parse_domain_at(struct cur *c, char *out)
{
	const unsigned char *start = c->p;
	size_t label = 0, total;
	int last = -1;

	if (peek(c) == '[')
		return parse_literal(c, out);
	for (;;) {
		int ch = peek(c);
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '_') {
			c->p++;
			label++;
		} else if (ch == '-') {
			if (label == 0)
				return fail(c, "domain: label starts with '-'");
			c->p++;
			label++;
		} else if (ch >= 0x80) {
			int n = utf8_step(c);
			if (n < 0)
				return -1;
			label += (size_t)n;
		} else if (ch == '.') {
			if (label == 0)
				return fail(c, "domain: empty label");
			if (last == '-')
				return fail(c, "domain: label ends with '-'");
			c->p++;
			label = 0;
		} else {
			break;
		}
		if (label > 63)
			return fail(c, "domain: label longer than 63 octets");
		last = ch;
	}
	if (c->p == start)
		return fail_char(c, "domain");
	if (label == 0)
		return fail(c, last == '.' ? "domain: ends with '.'" : "domain: empty label");
	if (last == '-')
		return fail(c, "domain: label ends with '-'");
	total = (size_t)(c->p - start);
	if (total > ADDR_DOMAIN_MAX)
		return fail(c, "domain: longer than 255 octets");
	memcpy(out, start, total);
	out[total] = '\0';
	return 0;
}

int
addr_parse_domain(const char *s, size_t len, struct addr_err *err)
{
	struct cur c = {(const unsigned char *)s, (const unsigned char *)s,
	                (const unsigned char *)s + len, err, ""};
	char out[ADDR_DOMAIN_MAX + 1];

	if (parse_domain_at(&c, out) < 0)
		return -1;
	if (c.p != c.end)
		return fail_char(&c, "domain");
	return 0;
}

/* Local parts ------------------------------------------------------------ */

/* is_dot_atom - whether a local-part value can go on the wire unquoted */
static bool
is_dot_atom(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || s[0] == '.' || s[len - 1] == '.')
		return false;
	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == '.') {
			if (s[i + 1] == '.')
				return false;
		} else if (ch >= 0x80) {
			size_t n = m3_utf8_seq((const unsigned char *)s + i, len - i);
			if (n == 0)
				return false;
			i += n - 1;
		} else if (!is_atext(ch)) {
			return false;
		}
	}
	return true;
}

/* canon_local - the wire form of a local-part value: dot-atom, or quoted */
static int
canon_local(struct cur *c, const char *v, size_t len, char *out)
{
	size_t i, o = 0;

	if (len == 0)
		return fail(c, "empty local part");
	for (i = 0; i < len; i++)
		if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
			return fail(c, "control character in local part "
			               "(cannot be sent over SMTP)");
	if (is_dot_atom(v, len)) {
		if (len > ADDR_LOCAL_MAX)
			return fail(c, "local part longer than 64 octets");
		memcpy(out, v, len);
		out[len] = '\0';
		return 0;
	}
	out[o++] = '"';
	for (i = 0; i < len; i++) {
		if (o + 3 > ADDR_LOCAL_MAX + 1)
			return fail(c, "local part longer than 64 octets");
		if (v[i] == '"' || v[i] == '\\')
			out[o++] = '\\';
		out[o++] = v[i];
	}
	out[o++] = '"';
	if (o > ADDR_LOCAL_MAX)
		return fail(c, "local part longer than 64 octets");
	out[o] = '\0';
	return 0;
}

/*
 * read_qstring - a quoted string at the cursor; its value (quoted pairs
 * undone, folds removed) is appended to v.  smtp selects RFC 5321's stricter
 * qtextSMTP (no folding, no tabs).
 */
static int
read_qstring(struct cur *c, struct val *v, bool smtp)
{
	c->p++; /* '"' */
	for (;;) {
		int ch = peek(c);
		unsigned char b;
		if (ch < 0)
			return fail(c, "quoted string: missing closing '\"'");
		if (ch == '"') {
			c->p++;
			return 0;
		}
		if (ch == '\\') {
			c->p++;
			ch = peek(c);
			if (ch < 0x20 || ch == 0x7f) {
				if (!(ch == '\t' && !smtp))
					return fail_char(c, "quoted pair");
			}
			if (ch >= 0x80)
				continue; /* a quoted UTF-8 character: taken next round */
			b = (unsigned char)ch;
			c->p++;
			if (val_add(c, v, &b, 1) < 0)
				return -1;
			continue;
		}
		if (ch >= 0x80) {
			const unsigned char *s = c->p;
			if (utf8_step(c) < 0)
				return -1;
			if (val_add(c, v, s, (size_t)(c->p - s)) < 0)
				return -1;
			continue;
		}
		if (!smtp && (ch == '\r' || ch == '\n')) {
			c->p++; /* unfold */
			continue;
		}
		if (ch == '\t' && !smtp)
			ch = ' ';
		if (ch < 0x20 || ch == 0x7f)
			return fail_char(c, "quoted string");
		b = (unsigned char)ch;
		c->p++;
		if (val_add(c, v, &b, 1) < 0)
			return -1;
	}
}

/* read_atom - 1*atext (plus UTF-8) appended to v */
static int
read_atom(struct cur *c, struct val *v)
{
	const unsigned char *s = c->p;

	for (;;) {
		int ch = peek(c);
		if (ch >= 0x80) {
			if (utf8_step(c) < 0)
				return -1;
		} else if (ch >= 0 && is_atext(ch)) {
			c->p++;
		} else {
			break;
		}
	}
	if (c->p == s)
		return fail_char(c, "address");
	return val_add(c, v, s, (size_t)(c->p - s));
}

/* Envelope (RFC 5321) ------------------------------------------------------ */

int
addr_parse_path(const char *s, size_t len, bool allow_null, struct addr *out, struct addr_err *err)
{
	struct cur c = {(const unsigned char *)s, (const unsigned char *)s,
	                (const unsigned char *)s + len, err, ""};
	char value[ADDR_LOCAL_MAX + 1];
	struct val v = {value, 0, ADDR_LOCAL_MAX, "local part longer than 64 octets"};
	bool angle = false;

	memset(out, 0, sizeof(*out));
	value[0] = '\0';
	if (len > ADDR_PATH_MAX + 2)
		return fail(&c, "address longer than 254 octets");
	if (peek(&c) == '<') {
		angle = true;
		c.p++;
		if (c.end == c.p || c.end[-1] != '>')
			return fail(&c, "missing closing '>'");
		c.end--;
	}
	if (c.p == c.end) {
		if (!allow_null)
			return fail(&c, "empty address");
		if (!angle && len != 0)
			return fail(&c, "empty address");
		return 0; /* the null reverse-path */
	}
	/* A source route (RFC 5321 4.1.2, obsolete) is accepted and ignored. */
	if (angle && peek(&c) == '@') {
		const unsigned char *colon = memchr(c.p, ':', (size_t)(c.end - c.p));
		if (colon == NULL)
			return fail(&c, "source route without ':'");
		c.p = colon + 1;
	}
	if (peek(&c) == '"') {
		if (read_qstring(&c, &v, true) < 0)
			return -1;
	} else {
		for (;;) {
			if (read_atom(&c, &v) < 0)
				return -1;
			if (peek(&c) != '.')
				break;
			c.p++;
			if (val_add(&c, &v, ".", 1) < 0)
				return -1;
		}
	}
	if (peek(&c) < 0)
		return fail(&c, "missing '@domain'");
	if (peek(&c) != '@')
		return fail_char(&c, "local part");
	if (canon_local(&c, v.buf, v.len, out->local) < 0)
		return -1;
	c.p++;
	if (parse_domain_at(&c, out->domain) < 0)
		return -1;
	if (c.p != c.end)
		return fail_char(&c, "after address");
	if (strlen(out->local) + 1 + strlen(out->domain) > ADDR_PATH_MAX)
		return fail(&c, "address longer than 254 octets");
	return 0;
}

/* Headers (RFC 5322) ------------------------------------------------------- */

static int
skip_comment(struct cur *c)
{
	struct val v = {c->comment, 0, ADDR_DISPLAY_MAX, "comment too long"};
	int depth = 0;

	c->comment[0] = '\0';
	for (;;) {
		int ch = peek(c);
		unsigned char b;
		if (ch < 0)
			return fail(c, "comment: missing ')'");
		if (ch == '(') {
			if (++depth > COMMENT_DEPTH_MAX)
				return fail(c, "comment: nested too deeply");
			c->p++;
			if (depth == 1)
				continue;
		} else if (ch == ')') {
			c->p++;
			if (--depth == 0)
				return 0;
		} else if (ch == '\\') {
			c->p++;
			ch = peek(c);
			if (ch < 0)
				return fail(c, "comment: missing ')'");
			if (ch >= 0x80)
				continue; /* the UTF-8 check happens next round */
			c->p++;
		} else if (ch >= 0x80) {
			const unsigned char *s = c->p;
			if (utf8_step(c) < 0)
				return -1;
			if (v.len + (size_t)(c->p - s) <= v.cap)
				val_add(c, &v, s, (size_t)(c->p - s));
			continue;
		} else if (ch == '\r' || ch == '\n' || ch == '\t' || ch == ' ') {
			c->p++;
			ch = ' ';
		} else if (ch < 0x20 || ch == 0x7f) {
			return fail_char(c, "comment");
		} else {
			c->p++;
		}
		/* Keep the text of the comment (truncated) as a display-name fallback. */
		b = (unsigned char)ch;
		if (depth >= 1 && v.len < v.cap)
			val_add(c, &v, &b, 1);
	}
}

/* skip_cfws - whitespace, folds and comments */
static int
skip_cfws(struct cur *c)
{
	for (;;) {
		int ch = peek(c);
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
		ch = peek(c);
		ew = encoded_word_len(c);
		if (ew == 0 && ch != '"' && ch != '.' && !(ch >= 0x80) &&
		    !(ch >= 0 && is_atext(ch)))
			return words;
		if (words > 0 && ch != '.' && val_add(c, disp, " ", 1) < 0)
			return -1;
		if (ew > 0) {
			if (val_add(c, disp, c->p, ew) < 0)
				return -1;
			c->p += ew;
		} else if (ch == '"') {
			if (read_qstring(c, disp, false) < 0)
				return -1;
		} else if (ch == '.') { /* obs-phrase */
			c->p++;
			if (val_add(c, disp, ".", 1) < 0)
				return -1;
		} else if (read_atom(c, disp) < 0) {
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

	if (peek(c) == '[')
		return parse_literal(c, out);
	for (;;) {
		const unsigned char *s = c->p;
		size_t len;
		while (c->p < c->end && (*c->p >= 0x80 || is_atext(*c->p)))
			c->p++;
		len = (size_t)(c->p - s);
		if (len == 0)
			return fail_char(c, "domain");
		if (n + len + 1 > ADDR_DOMAIN_MAX)
			return fail(c, "domain: longer than 255 octets");
		memcpy(tmp + n, s, len);
		n += len;
		if (skip_cfws(c) < 0)
			return -1;
		if (peek(c) != '.')
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
	if (parse_domain_at(&v, out) < 0 || v.p != v.end) {
		if (v.p != v.end)
			fail_char(&v, "domain");
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
		if (peek(c) == '"') {
			if (read_qstring(c, &v, false) < 0)
				return -1;
		} else if (read_atom(c, &v) < 0) {
			return -1;
		}
		if (skip_cfws(c) < 0)
			return -1;
		if (peek(c) != '.')
			break;
		c->p++;
		if (val_add(c, &v, ".", 1) < 0)
			return -1;
	}
	if (peek(c) < 0)
		return fail(c, "missing '@domain'");
	if (peek(c) != '@')
		return fail_char(c, "local part");
	if (canon_local(c, v.buf, v.len, out->local) < 0)
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
	if (peek(c) == '>')
		return fail(c, "empty address <>");
	if (peek(c) == '@') { /* obs-route: @a,@b: */
		while (c->p < c->end && *c->p != ':' && *c->p != '>')
			c->p++;
		if (peek(c) != ':')
			return fail(c, "route without ':'");
		c->p++;
	}
	if (read_addr_spec(c, out) < 0)
		return -1;
	if (skip_cfws(c) < 0)
		return -1;
	if (peek(c) != '>')
		return fail_char(c, "address: missing '>'");
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
	if (peek(c) == '<') {
		if (read_angle_addr(c, &a) < 0)
			return -1;
	} else if (peek(c) == ':' && words > 0 && group_start != NULL) {
		c->p++;
		*group_start = true;
		return 0;
	} else if (peek(c) == '@' && words > 0) {
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
			val_add(c, disp, c->comment, strlen(c->comment));
	} else if (words == 0) {
		return fail_char(c, "expected an address");
	} else {
		return fail_char(c, "address without '@domain'");
	}
	if (lo->n >= lo->cap) {
		fail(c, "too many addresses");
		if (c->err != NULL)
			c->err->too_many = true; /* decided on, never the text */
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
		return fail(&c, "header value too long");
	if (memchr(s, '\0', len) != NULL) {
		c.p = memchr(s, '\0', len);
		return fail(&c, "NUL byte");
	}
	for (;;) {
		bool group = false;

		if (skip_cfws(&c) < 0)
			return -1;
		if (peek(&c) == ',') { /* obs-addr-list: empty element */
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
				if (peek(&c) == ';') {
					c.p++;
					break;
				}
				if (peek(&c) == ',') {
					c.p++;
					continue;
				}
				if (c.p == c.end)
					return fail(&c, "group: missing ';'");
				if (read_mailbox(&c, &lo, NULL, &disp) < 0)
					return -1;
				if (peek(&c) != ',' && peek(&c) != ';')
					return fail_char(&c, "group");
			}
			if (skip_cfws(&c) < 0)
				return -1;
		}
		if (c.p == c.end)
			break;
		if (peek(&c) != ',')
			return fail_char(&c, "after address");
		c.p++;
	}
	*n = lo.n;
	return 0;
}

/* Formatting and comparison ------------------------------------------------ */

bool
addr_is_null(const struct addr *a)
{
	return a->local[0] == '\0' && a->domain[0] == '\0';
}

bool
addr_equal(const struct addr *a, const struct addr *b)
{
	return m3_casecmp(a->local, b->local) == 0 && m3_casecmp(a->domain, b->domain) == 0;
}

int
addr_format(const struct addr *a, char *buf, size_t size)
{
	int n;

	if (addr_is_null(a)) {
		if (size == 0)
			return -1;
		buf[0] = '\0';
		return 0;
	}
	n = snprintf(buf, size, "%s@%s", a->local, a->domain);
	return n < 0 || (size_t)n >= size ? -1 : n;
}

/* phrase_safe - whether a display name can be written as bare atoms */
static bool
phrase_safe(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	if (*p == ' ' || *p == '\0')
		return false;
	for (; *p; p++)
		if (!(*p == ' ' || *p >= 0x80 || is_atext(*p)))
			return false;
	return p[-1] != ' ';
}

int
addr_format_mailbox(const char *display, const struct addr *a, char *buf, size_t size)
{
	char ab[ADDR_TEXT_MAX + 1];
	size_t o = 0;
	const unsigned char *p;
	int n;

	if (addr_format(a, ab, sizeof(ab)) < 0)
		return -1;
	if (display == NULL || display[0] == '\0') {
		n = snprintf(buf, size, "%s", ab);
		return n < 0 || (size_t)n >= size ? -1 : n;
	}
	if (phrase_safe(display)) {
		n = snprintf(buf, size, "%s <%s>", display, ab);
		return n < 0 || (size_t)n >= size ? -1 : n;
	}
	/* Quote it: escape '"' and '\', turn control characters into spaces. */
	if (size < 2)
		return -1;
	buf[o++] = '"';
	for (p = (const unsigned char *)display; *p; p++) {
		if (o + 3 >= size)
			return -1;
		if (*p == '"' || *p == '\\')
			buf[o++] = '\\';
		buf[o++] = (char)(*p < 0x20 || *p == 0x7f ? ' ' : *p);
	}
	n = snprintf(buf + o, size - o, "\" <%s>", ab);
	return n < 0 || (size_t)n >= size - o ? -1 : (int)o + n;
}

/* Patterns ------------------------------------------------------------------ */

bool
domain_match(const char *pattern, const char *domain)
{
	size_t pl, dl;

	if (pattern[0] == '*' && pattern[1] == '.') {
		pl = strlen(pattern + 1); /* ".example.com" */
		dl = strlen(domain);
		return dl > pl && m3_casecmp(domain + dl - pl, pattern + 1) == 0;
	}
	return m3_casecmp(pattern, domain) == 0;
}

bool
addr_match(const char *pattern, const struct addr *a)
{
	const char *at;

	if (strcmp(pattern, "*") == 0)
		return !addr_is_null(a);
	at = strrchr(pattern, '@');
	if (at == NULL)
		return false;
	if (at != pattern && (strlen(a->local) != (size_t)(at - pattern) ||
	                      m3_ncasecmp(pattern, a->local, (size_t)(at - pattern)) != 0))
		return false;
	return domain_match(at + 1, a->domain);
}

int
domain_pattern_check(const char *pattern, struct addr_err *err)
{
	const char *d = pattern;

	if (d[0] == '*') {
		if (d[1] != '.') {
			err->off = 1;
			m3_strlcpy(err->msg, "a wildcard must be written *.domain",
			           sizeof(err->msg));
			return -1;
		}
		d += 2;
	}
	if (d[0] == '[') {
		err->off = 0;
		m3_strlcpy(err->msg, "an address literal is not a domain", sizeof(err->msg));
		return -1;
	}
	if (addr_parse_domain(d, strlen(d), err) < 0) {
		err->off += (size_t)(d - pattern);
		return -1;
	}
	return 0;
}

int
addr_pattern_check(const char *pattern, struct addr_err *err)
{
	const char *at;
	struct addr a;

	if (strcmp(pattern, "*") == 0)
		return 0;
	at = strrchr(pattern, '@');
	if (at == NULL) {
		err->off = 0;
		m3_strlcpy(err->msg, "expected local@domain, @domain or *", sizeof(err->msg));
		return -1;
	}
	if (at != pattern) {
		/* Check the local part by parsing a sample address. */
		char tmp[ADDR_TEXT_MAX + 16];
		snprintf(tmp, sizeof(tmp), "%.*s@example.com", (int)(at - pattern), pattern);
		if (addr_parse_path(tmp, strlen(tmp), false, &a, err) < 0)
			return -1;
		if (strlen(a.local) != (size_t)(at - pattern) ||
		    strncmp(a.local, pattern, (size_t)(at - pattern)) != 0) {
			err->off = 0;
			m3_strlcpy(err->msg, "local part is not in canonical form",
			           sizeof(err->msg));
			return -1;
		}
	}
	if (domain_pattern_check(at + 1, err) < 0) {
		err->off += (size_t)(at + 1 - pattern);
		return -1;
	}
	return 0;
}
