/*
 * smtp.c - SMTP client.
 */
#include "config.h"

#include <limits.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "util/sbuf.h"
#include "smtp.h"
#include "util/util.h"

#define LINE_MAX_SMTP   4096
#define REPLY_LINES_MAX 64

/* smtp_fail - a failure of ours or the peer's, said in net.err with its code */
static void smtp_fail(struct smtp *s, enum net_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
smtp_fail(struct smtp *s, enum net_code code, const char *fmt, ...)
{
	va_list ap;

	s->net.code = code;
	va_start(ap, fmt);
	vsnprintf(s->net.err, sizeof(s->net.err), fmt, ap);
	va_end(ap);
}

static int
reply_code(const char *line, size_t n)
{
	if (n < 3 || line[0] < '1' || line[0] > '5' || line[1] < '0' || line[1] > '9' ||
	    line[2] < '0' || line[2] > '9')
		return -1;
	if (n > 3 && line[3] != ' ' && line[3] != '-')
		return -1;
	return (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
}

/* The enhanced status code (RFC 3463) that starts the text, if any. */
static void
find_xcode(struct smtp_reply *r)
{
	const char *t = r->text;
	size_t i = 0;
	int dots = 0;

	while (i < 15 && (t[i] == '.' || (t[i] >= '0' && t[i] <= '9'))) {
		dots += t[i] == '.';
		i++;
	}
	if (dots == 2 && i >= 5 && (t[i] == ' ' || t[i] == '\0') && t[0] - '0' == r->code / 100 &&
	    t[1] == '.') {
		memcpy(r->xcode, t, i);
		r->xcode[i] = '\0';
	}
}

void
smtp_reply_begin(struct smtp_reply *r)
{
	memset(r, 0, sizeof(*r));
}

/*
 * smtp_reply_add - the text of every line is joined with a space, cut at
 * the size of r->text, and control characters become '?' (the text goes
 * to logs and, through pipe(8), into bounces).  Every line must carry the
 * same code; a reply of more than REPLY_LINES_MAX lines is refused.
 */
int
smtp_reply_add(struct smtp_reply *r, const char *line, size_t n, const char **err)
{
	int code = reply_code(line, n);
	size_t i;

	if (code < 0 || (r->lines > 0 && code != r->code)) {
		*err = "a malformed reply";
		return -1;
	}
	if (++r->lines > REPLY_LINES_MAX) {
		*err = "a reply of too many lines";
		return -1;
	}
	r->code = code;
	if (n > 4 && (!r->ehlo || r->lines == 1)) {
		if (r->used > 0 && r->used + 1 < sizeof(r->text))
			r->text[r->used++] = ' ';
		for (i = 4; i < n && r->used + 1 < sizeof(r->text); i++) {
			unsigned char c = (unsigned char)line[i];
			r->text[r->used++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
		}
		r->text[r->used] = '\0';
	}
	if (n > 3 && line[3] == '-')
		return 0;
	find_xcode(r);
	return 1;
}

/*
 * read_reply - a complete reply.  With ehlo set, each line's text after
 * the first is handed to it (EHLO keywords) rather than joined.
 */
static int
read_reply_x(struct smtp *s, struct smtp_reply *r, int timeout,
             void (*ehlo)(struct smtp *, const char *, size_t))
{
	char line[LINE_MAX_SMTP];
	const char *err;
	int n, rc;

	smtp_reply_begin(r);
	r->ehlo = ehlo != NULL;
	do {
		n = net_readline(&s->net, line, sizeof(line), timeout);
		if (n < 0)
			return -1;
		log_debug("< %s", line);
		rc = smtp_reply_add(r, line, (size_t)n, &err);
		if (rc < 0) {
			smtp_fail(s, NET_EPROTO, "%s sent %s: %.80s", s->net.host, err, line);
			return -1;
		}
		if (ehlo != NULL && r->lines > 1 && n > 4)
			ehlo(s, line + 4, (size_t)n - 4);
	} while (rc == 0);
	return 0;
}

static int
read_reply(struct smtp *s, struct smtp_reply *r, int timeout)
{
	return read_reply_x(s, r, timeout, NULL);
}

/*
 * line_ok - a command may not carry CR, LF or NUL of its own: every
 * address was checked where it entered, and this is the last guard
 * against a second command smuggled inside the first.
 */
static bool
line_ok(const char *p, size_t n)
{
	return memchr(p, '\r', n) == NULL && memchr(p, '\n', n) == NULL;
}

static int
send_line(struct smtp *s, const char *line, bool secret)
{
	struct sbuf b;
	int rc;

	if (log_debug_enabled())
		log_debug("> %s", secret ? "(authentication data redacted)" : line);
	if (!line_ok(line, strlen(line))) {
		smtp_fail(s, NET_ELOCAL,
		          "refusing to send a command "
		          "holding CR or LF");
		return -1;
	}
	sbuf_init(&b, LINE_MAX_SMTP + 2);
	if (sbuf_adds(&b, line) < 0 || sbuf_add(&b, "\r\n", 2) < 0) {
		sbuf_free(&b);
		smtp_fail(s, NET_ELOCAL, "command too long");
		return -1;
	}
	rc = net_write(&s->net, b.s, b.len, s->t.command);
	if (secret)
		sbuf_cleanse(&b);
	sbuf_free(&b);
	return rc;
}

static int command(struct smtp *s, struct smtp_reply *r, bool secret, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* command - one command line, made printf-style, and its reply */
static int
command(struct smtp *s, struct smtp_reply *r, bool secret, const char *fmt, ...)
{
	struct sbuf b;
	va_list ap;
	int rc;

	sbuf_init(&b, LINE_MAX_SMTP);
	va_start(ap, fmt);
	rc = sbuf_vaddf(&b, fmt, ap);
	va_end(ap);
	if (rc < 0)
		smtp_fail(s, NET_ELOCAL, "command too long");
	else
		rc = send_line(s, b.s, secret);
	if (secret)
		sbuf_cleanse(&b);
	sbuf_free(&b);
	return rc < 0 ? -1 : read_reply(s, r, s->t.command);
}

int
smtp_open(struct smtp *s, const char *host, unsigned port, struct smtp_reply *greeting)
{
	if (net_connect(&s->net, host, port, s->t.connect) < 0)
		return -1;
	log_debug("connected to %s[%s]:%u", host, s->net.peer, port);
	return read_reply(s, greeting, s->t.greeting);
}

/*
 * smtp_ehlo_keyword - one line of an EHLO reply: the extensions we use.
 * Keywords are case-insensitive; a SIZE value that is not a plain number
 * in range counts as no limit given.
 */
void
smtp_ehlo_keyword(unsigned *ext, unsigned long *size_limit, const char *kw, size_t n)
{
	char word[64], mech[32];
	size_t i, j;

	for (i = 0; i + 1 < sizeof(word) && i < n && kw[i] != ' '; i++)
		word[i] = kw[i];
	word[i] = '\0';
	if (i < n && kw[i] != ' ')
		return; /* a keyword longer than any we know */
	if (m3_casecmp(word, "PIPELINING") == 0)
		*ext |= EXT_PIPELINING;
	else if (m3_casecmp(word, "8BITMIME") == 0)
		*ext |= EXT_8BITMIME;
	else if (m3_casecmp(word, "SMTPUTF8") == 0)
		*ext |= EXT_SMTPUTF8;
	else if (m3_casecmp(word, "STARTTLS") == 0)
		*ext |= EXT_STARTTLS;
	else if (m3_casecmp(word, "ENHANCEDSTATUSCODES") == 0)
		*ext |= EXT_ENHANCED;
	else if (m3_casecmp(word, "SIZE") == 0) {
		unsigned long v = 0;
		*ext |= EXT_SIZE;
		*size_limit = 0;
		for (j = i + 1; i < n && j < n && kw[j] >= '0' && kw[j] <= '9'; j++) {
			if (v > (ULONG_MAX - 9) / 10) {
				v = 0;
				break;
			}
			v = v * 10 + (unsigned long)(kw[j] - '0');
		}
		if (j == n)
			*size_limit = v;
	} else if (m3_casecmp(word, "AUTH") == 0) {
		/* The mechanisms follow, space separated. */
		while (i < n && kw[i] == ' ') {
			i++;
			for (j = 0; i < n && kw[i] != ' '; i++)
				if (j + 1 < sizeof(mech))
					mech[j++] = kw[i];
			mech[j] = '\0';
			if (m3_casecmp(mech, "LOGIN") == 0)
				*ext |= EXT_AUTH_LOGIN;
			else if (m3_casecmp(mech, "XOAUTH2") == 0)
				*ext |= EXT_AUTH_XOAUTH2;
		}
	}
}

static void
ehlo_keyword(struct smtp *s, const char *kw, size_t n)
{
	smtp_ehlo_keyword(&s->ext, &s->size_limit, kw, n);
}

int
smtp_ehlo(struct smtp *s, struct smtp_reply *r)
{
	char line[300];

	s->ext = 0;
	s->size_limit = 0;
	snprintf(line, sizeof(line), "EHLO %s", s->helo);
	if (send_line(s, line, false) < 0)
		return -1;
	return read_reply_x(s, r, s->t.command, ehlo_keyword);
}

int
smtp_starttls(struct smtp *s, const struct tls_opts *o, struct smtp_reply *r)
{
	if (command(s, r, false, "STARTTLS") < 0)
		return -1;
	if (r->code != 220)
		return 0;
	/*
	 * Anything the server sent after its 220 arrived before TLS and must
	 * not be read as if it came through it (the STARTTLS injection of
	 * CVE-2011-0411 and friends).
	 */
	if (s->net.roff < s->net.rlen) {
		smtp_fail(s, NET_EPROTO, "%s sent data after its STARTTLS reply; refusing it",
		          s->net.host);
		return -1;
	}
	if (net_starttls(&s->net, o, s->t.command) < 0)
		return -1;
	log_debug("TLS %s with %s%s", s->net.tls_version, s->net.host,
	          s->net.resumed ? " (session resumed)" : "");
	return 0;
}

static void
b64(const char *in, size_t len, char *out, size_t size)
{
	if (size < 4 * ((len + 2) / 3) + 1) {
		out[0] = '\0';
		return;
	}
	EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)in, (int)len);
}

int
smtp_auth_login(struct smtp *s, const char *user, const char *password, struct smtp_reply *r)
{
	char enc[1024];

	if (command(s, r, false, "AUTH LOGIN") < 0)
		return -1;
	if (r->code != 334)
		return 0;
	b64(user, strlen(user), enc, sizeof(enc));
	if (command(s, r, true, "%s", enc) < 0)
		return -1;
	if (r->code != 334)
		return 0;
	b64(password, strlen(password), enc, sizeof(enc));
	return command(s, r, true, "%s", enc);
}

int
smtp_auth_xoauth2(struct smtp *s, const char *user, const char *token, struct smtp_reply *r)
{
	char raw[8192], enc[11000];
	int n;

	/* user=<mailbox>^Aauth=Bearer <token>^A^A, with the initial response. */
	n = snprintf(raw, sizeof(raw), "user=%s\001auth=Bearer %s\001\001", user, token);
	if (n < 0 || (size_t)n >= sizeof(raw)) {
		smtp_fail(s, NET_ELOCAL, "OAuth token too long");
		return -1;
	}
	b64(raw, (size_t)n, enc, sizeof(enc));
	OPENSSL_cleanse(raw, sizeof(raw));
	if (log_debug_enabled())
		log_debug("> AUTH XOAUTH2 (token redacted)");
	n = snprintf(raw, sizeof(raw), "AUTH XOAUTH2 %s\r\n", enc);
	OPENSSL_cleanse(enc, sizeof(enc));
	if (n < 0 || (size_t)n >= sizeof(raw)) {
		smtp_fail(s, NET_ELOCAL, "OAuth token too long");
		return -1;
	}
	if (net_write(&s->net, raw, (size_t)n, s->t.command) < 0)
		return -1;
	OPENSSL_cleanse(raw, sizeof(raw));
	if (read_reply(s, r, s->t.command) < 0)
		return -1;
	if (r->code == 334) {
		/* A challenge carrying an error: answer empty, read the verdict. */
		if (command(s, r, false, "%s", "") < 0)
			return -1;
	}
	return 0;
}

/* mail_params - SIZE, BODY and SMTPUTF8 as the server offers them */
static int
mail_params(const struct smtp *s, const struct smtp_msg *m, struct sbuf *b)
{
	if (s->ext & EXT_SIZE)
		sbuf_addf(b, " SIZE=%lu", m->size);
	if (m->eightbit && (s->ext & EXT_8BITMIME))
		sbuf_adds(b, " BODY=8BITMIME");
	if (m->utf8 && (s->ext & EXT_SMTPUTF8))
		sbuf_adds(b, " SMTPUTF8");
	return b->failed ? -1 : 0;
}

static int
write_body(struct smtp *s, const struct smtp_msg *m)
{
	const size_t block = 64 * 1024;
	size_t off;

	for (off = 0; off < m->wire_len; off += block) {
		size_t len = m->wire_len - off < block ? m->wire_len - off : block;
		if (net_write(&s->net, m->wire + off, len, s->t.block) < 0)
			return -1;
	}
	return 0;
}

/*
 * out_of_step - a reply of a class the command cannot have (a 3xx to
 * MAIL or RCPT, anything but 354/4xx/5xx to DATA, a 1xx or 3xx after the
 * final dot), or bytes waiting that no command asked for: the replies no
 * longer match the commands, and nothing read from here on can be
 * believed.  A protocol error: the caller defers.
 */
static int
out_of_step(struct smtp *s, const char *cmd, const struct smtp_reply *r)
{
	if (r != NULL)
		smtp_fail(s, NET_EPROTO,
		          "%s answered %s with %d: replies out of step with commands", s->net.host,
		          cmd, r->code);
	else
		smtp_fail(s, NET_EPROTO, "%s sent a reply no command asked for (after %s)",
		          s->net.host, cmd);
	return -1;
}

static bool
unread(const struct smtp *s)
{
	return s->net.roff < s->net.rlen;
}

/* The reply classes each command may have (RFC 5321 4.3.2). */
#define CLASS_OK(r) ((r)->code / 100 == 2 || (r)->code / 100 == 4 || (r)->code / 100 == 5)

/* write_envelope - MAIL, each RCPT and (when pipelining) DATA, in one write */
static int
write_envelope(struct smtp *s, const char *sender, const char *params, const char *const *rcpts,
               size_t n, bool with_data)
{
	struct sbuf b;
	size_t i;
	int rc;

	/* Each address was parsed and formatted canonically: at most
	 * ADDR_TEXT_MAX bytes, no CR, LF or angle brackets of its own. */
	sbuf_init(&b, (n + 2) * (LINE_MAX_SMTP + 2));
	sbuf_addf(&b, "MAIL FROM:<%s>%s\r\n", sender, params);
	log_debug("> MAIL FROM:<%s>%s", sender, params);
	for (i = 0; i < n; i++) {
		sbuf_addf(&b, "RCPT TO:<%s>\r\n", rcpts[i]);
		log_debug("> RCPT TO:<%s>", rcpts[i]);
	}
	if (with_data) {
		sbuf_adds(&b, "DATA\r\n");
		log_debug("> DATA");
	}
	if (b.failed) {
		sbuf_free(&b);
		smtp_fail(s, NET_ELOCAL, "out of memory for the envelope");
		return -1;
	}
	rc = net_write(&s->net, b.s, b.len, s->t.command);
	sbuf_free(&b);
	return rc;
}

int
smtp_transaction(struct smtp *s, const char *sender, const char *const *rcpts, size_t n,
                 const struct smtp_msg *m, struct smtp_reply *rr, struct smtp_reply *final)
{
	struct smtp_reply mail, data;
	struct sbuf params;
	size_t i, ok = 0;
	bool pipelined = (s->ext & EXT_PIPELINING) != 0;

	memset(final, 0, sizeof(*final));
	if (n == 0) {
		smtp_fail(s, NET_ELOCAL, "a transaction without recipients");
		return -1;
	}
	if (!line_ok(sender, strlen(sender)) || strchr(sender, '<') || strchr(sender, '>')) {
		smtp_fail(s, NET_ELOCAL, "refusing an unsafe sender address");
		return -1;
	}
	for (i = 0; i < n; i++)
		if (!line_ok(rcpts[i], strlen(rcpts[i])) || strchr(rcpts[i], '<') ||
		    strchr(rcpts[i], '>')) {
			smtp_fail(s, NET_ELOCAL, "refusing an unsafe recipient address");
			return -1;
		}
	sbuf_init(&params, 96);
	if (mail_params(s, m, &params) < 0) {
		sbuf_free(&params);
		smtp_fail(s, NET_ELOCAL, "MAIL parameters too long");
		return -1;
	}
	if (pipelined) {
		/* MAIL, every RCPT and DATA in one write (RFC 2920). */
		if (write_envelope(s, sender, sbuf_str(&params), rcpts, n, true) < 0)
			goto fail;
		if (read_reply(s, &mail, s->t.command) < 0)
			goto fail;
		if (!CLASS_OK(&mail))
			goto step_mail;
		for (i = 0; i < n; i++) {
			if (read_reply(s, &rr[i], s->t.command) < 0)
				goto fail;
			if (!CLASS_OK(&rr[i])) {
				out_of_step(s, "RCPT", &rr[i]);
				goto fail;
			}
			if (mail.code / 100 != 2)
				rr[i] = mail; /* the sender was refused: so is everyone */
			else if (rr[i].code / 100 == 2)
				ok++;
		}
		if (read_reply(s, &data, s->t.data) < 0)
			goto fail;
		if (data.code == 354 && ok == 0) {
			/* A server that says 354 with nobody to deliver to: end it
			 * with an empty message, whose reply is not a delivery. */
			if (unread(s) || net_write(&s->net, ".\r\n", 3, s->t.command) < 0 ||
			    read_reply(s, &data, s->t.dot) < 0)
				goto fail;
		}
	} else {
		if (write_envelope(s, sender, sbuf_str(&params), rcpts, 0, false) < 0 ||
		    read_reply(s, &mail, s->t.command) < 0)
			goto fail;
		if (!CLASS_OK(&mail))
			goto step_mail;
		for (i = 0; i < n; i++) {
			if (mail.code / 100 != 2) {
				rr[i] = mail;
				continue;
			}
			if (command(s, &rr[i], false, "RCPT TO:<%s>", rcpts[i]) < 0)
				goto fail;
			if (!CLASS_OK(&rr[i])) {
				out_of_step(s, "RCPT", &rr[i]);
				goto fail;
			}
			if (rr[i].code / 100 == 2)
				ok++;
		}
		if (ok == 0) {
			*final = mail.code / 100 == 2 ? rr[0] : mail;
			sbuf_free(&params);
			return 0;
		}
		if (send_line(s, "DATA", false) < 0 || read_reply(s, &data, s->t.data) < 0)
			goto fail;
	}
	sbuf_free(&params);
	if (ok == 0) {
		/* Nobody was accepted: each recipient keeps its own refusal. */
		*final = mail.code / 100 == 2 ? rr[0] : mail;
		return 0;
	}
	if (data.code != 354) {
		if (data.code / 100 != 4 && data.code / 100 != 5)
			return out_of_step(s, "DATA", &data);
		*final = data;
		return 0;
	}
	if (unread(s))
		return out_of_step(s, "DATA", NULL);
	log_debug("> (message, %zu bytes)", m->wire_len);
	if (write_body(s, m) < 0 || read_reply(s, final, s->t.dot) < 0)
		return -1;
	if (!CLASS_OK(final))
		return out_of_step(s, "the final dot", final);
	if (unread(s))
		return out_of_step(s, "the final dot", NULL);
	return 0;
step_mail:
	out_of_step(s, "MAIL", &mail);
fail:
	sbuf_free(&params);
	return -1;
}

int
smtp_rset(struct smtp *s, struct smtp_reply *r)
{
	memset(r, 0, sizeof(*r));
	if (unread(s)) { /* something the server said unasked: not a session to trust */
		smtp_fail(s, NET_EPROTO, "unexpected data from the server between messages");
		return -1;
	}
	return command(s, r, false, "RSET");
}

void
smtp_quit(struct smtp *s)
{
	struct smtp_reply r;

	if (s->net.fd >= 0 && send_line(s, "QUIT", false) == 0)
		(void)read_reply(s, &r, 10);
	net_close(&s->net);
}
