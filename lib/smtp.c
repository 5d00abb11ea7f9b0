/*
 * smtp.c - SMTP client.
 */
#include "config.h"

#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "smtp.h"
#include "util.h"

#define LINE_MAX_SMTP	4096
#define REPLY_LINES_MAX 64

const char *
smtp_reply_line(const struct smtp_reply *r, char *buf, size_t size)
{
	snprintf(buf, size, "%s", r->text);
	return buf;
}

static int
reply_code(const char *line)
{
	if (line[0] < '1' || line[0] > '5' || line[1] < '0' || line[1] > '9' ||
	    line[2] < '0' || line[2] > '9')
		return -1;
	if (line[3] != ' ' && line[3] != '-' && line[3] != '\0')
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
	if (dots == 2 && i >= 5 && (t[i] == ' ' || t[i] == '\0') &&
	    t[0] - '0' == r->code / 100 && t[1] == '.') {
		memcpy(r->xcode, t, i);
		r->xcode[i] = '\0';
	}
}

/*
 * read_reply - a complete reply.  With ehlo set, each line's text is
 * handed to it (EHLO keywords); otherwise lines are joined with a space.
 */
static int
read_reply_x(struct smtp *s, struct smtp_reply *r, int timeout,
	     void (*ehlo)(struct smtp *, const char *))
{
	char line[LINE_MAX_SMTP];
	size_t used = 0;
	int n, code, lines = 0;

	memset(r, 0, sizeof(*r));
	for (;;) {
		n = net_readline(&s->net, line, sizeof(line), timeout);
		if (n < 0)
			return -1;
		log_debug("< %s", line);
		code = n >= 3 ? reply_code(line) : -1;
		if (code < 0 || (r->code != 0 && code != r->code)) {
			snprintf(s->net.err, sizeof(s->net.err),
				 "%s sent a malformed reply: %.80s", s->net.host, line);
			return -1;
		}
		r->code = code;
		if (ehlo != NULL && lines > 0 && n > 4)
			ehlo(s, line + 4);
		if (n > 4 && (ehlo == NULL || lines == 0)) {
			size_t l = strlen(line + 4);
			if (used > 0 && used + 1 < sizeof(r->text))
				r->text[used++] = ' ';
			if (used + l >= sizeof(r->text))
				l = sizeof(r->text) - used - 1;
			memcpy(r->text + used, line + 4, l);
			used += l;
			r->text[used] = '\0';
		}
		if (n < 4 || line[3] != '-')
			break;
		if (++lines > REPLY_LINES_MAX) {
			snprintf(s->net.err, sizeof(s->net.err),
				 "%s sent a reply of more than %d lines", s->net.host,
				 REPLY_LINES_MAX);
			return -1;
		}
	}
	find_xcode(r);
	return 0;
}

static int
read_reply(struct smtp *s, struct smtp_reply *r, int timeout)
{
	return read_reply_x(s, r, timeout, NULL);
}

static int
send_line(struct smtp *s, const char *line, bool secret)
{
	char buf[LINE_MAX_SMTP + 3];
	int n;

	if (log_debug_enabled())
		log_debug("> %s", secret ? "(authentication data redacted)" : line);
	n = snprintf(buf, sizeof(buf), "%s\r\n", line);
	if (n < 0 || (size_t)n >= sizeof(buf)) {
		snprintf(s->net.err, sizeof(s->net.err), "command too long");
		return -1;
	}
	return net_write(&s->net, buf, (size_t)n, s->t.command);
}

static int command(struct smtp *s, struct smtp_reply *r, bool secret,
		   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int
command(struct smtp *s, struct smtp_reply *r, bool secret, const char *fmt, ...)
{
	char line[LINE_MAX_SMTP];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line)) {
		snprintf(s->net.err, sizeof(s->net.err), "command too long");
		return -1;
	}
	if (send_line(s, line, secret) < 0)
		return -1;
	return read_reply(s, r, s->t.command);
}

int
smtp_open(struct smtp *s, const char *host, unsigned port,
	  struct smtp_reply *greeting)
{
	if (net_connect(&s->net, host, port, s->t.connect) < 0)
		return -1;
	log_debug("connected to %s[%s]:%u", host, s->net.peer, port);
	return read_reply(s, greeting, s->t.greeting);
}

static void
ehlo_keyword(struct smtp *s, const char *kw)
{
	char word[64];
	size_t i;

	for (i = 0; i + 1 < sizeof(word) && kw[i] && kw[i] != ' '; i++)
		word[i] = kw[i];
	word[i] = '\0';
	if (m3_casecmp(word, "PIPELINING") == 0)
		s->ext |= EXT_PIPELINING;
	else if (m3_casecmp(word, "8BITMIME") == 0)
		s->ext |= EXT_8BITMIME;
	else if (m3_casecmp(word, "SMTPUTF8") == 0)
		s->ext |= EXT_SMTPUTF8;
	else if (m3_casecmp(word, "STARTTLS") == 0)
		s->ext |= EXT_STARTTLS;
	else if (m3_casecmp(word, "ENHANCEDSTATUSCODES") == 0)
		s->ext |= EXT_ENHANCED;
	else if (m3_casecmp(word, "SIZE") == 0) {
		s->ext |= EXT_SIZE;
		if (kw[i] == ' ')
			s->size_limit = strtoul(kw + i + 1, NULL, 10);
	} else if (m3_casecmp(word, "AUTH") == 0) {
		/* The mechanisms follow, space separated. */
		const char *p = kw + i;
		while (*p == ' ') {
			char mech[32];
			size_t j = 0;
			p++;
			while (*p && *p != ' ' && j + 1 < sizeof(mech))
				mech[j++] = *p++;
			mech[j] = '\0';
			if (m3_casecmp(mech, "LOGIN") == 0)
				s->ext |= EXT_AUTH_LOGIN;
			else if (m3_casecmp(mech, "XOAUTH2") == 0)
				s->ext |= EXT_AUTH_XOAUTH2;
		}
	}
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
		snprintf(s->net.err, sizeof(s->net.err),
			 "%s sent data after its STARTTLS reply; refusing it",
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
smtp_auth_login(struct smtp *s, const char *user, const char *password,
		struct smtp_reply *r)
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
smtp_auth_xoauth2(struct smtp *s, const char *user, const char *token,
		  struct smtp_reply *r)
{
	char raw[8192], enc[11000];
	int n;

	/* user=<mailbox>^Aauth=Bearer <token>^A^A, with the initial response. */
	n = snprintf(raw, sizeof(raw), "user=%s\001auth=Bearer %s\001\001", user, token);
	if (n < 0 || (size_t)n >= sizeof(raw)) {
		snprintf(s->net.err, sizeof(s->net.err), "OAuth token too long");
		return -1;
	}
	b64(raw, (size_t)n, enc, sizeof(enc));
	OPENSSL_cleanse(raw, sizeof(raw));
	if (log_debug_enabled())
		log_debug("> AUTH XOAUTH2 (token redacted)");
	n = snprintf(raw, sizeof(raw), "AUTH XOAUTH2 %s\r\n", enc);
	OPENSSL_cleanse(enc, sizeof(enc));
	if (n < 0 || (size_t)n >= sizeof(raw)) {
		snprintf(s->net.err, sizeof(s->net.err), "OAuth token too long");
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
static void
mail_params(const struct smtp *s, const struct smtp_msg *m, char *buf, size_t size)
{
	buf[0] = '\0';
	if (s->ext & EXT_SIZE)
		snprintf(buf + strlen(buf), size - strlen(buf), " SIZE=%lu", m->size);
	if (m->eightbit && (s->ext & EXT_8BITMIME))
		m3_strlcat(buf, " BODY=8BITMIME", size);
	if (m->utf8 && (s->ext & EXT_SMTPUTF8))
		m3_strlcat(buf, " SMTPUTF8", size);
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

int
smtp_transaction(struct smtp *s, const char *sender, const char *const *rcpts,
		 size_t n, const struct smtp_msg *m, struct smtp_reply *rr,
		 struct smtp_reply *final)
{
	char params[96], line[LINE_MAX_SMTP];
	struct smtp_reply mail, data;
	size_t i, ok = 0;
	bool pipelined = (s->ext & EXT_PIPELINING) != 0;
	int rc;

	memset(final, 0, sizeof(*final));
	mail_params(s, m, params, sizeof(params));
	if (pipelined) {
		/* MAIL, every RCPT and DATA in one write (RFC 2920). */
		char *buf;
		size_t cap = 512 + n * 320, len = 0;
		buf = malloc(cap);
		if (buf == NULL) {
			snprintf(s->net.err, sizeof(s->net.err), "out of memory");
			return -1;
		}
		len += (size_t)snprintf(buf + len, cap - len, "MAIL FROM:<%s>%s\r\n", sender, params);
		log_debug("> MAIL FROM:<%s>%s", sender, params);
		for (i = 0; i < n; i++) {
			len += (size_t)snprintf(buf + len, cap - len, "RCPT TO:<%s>\r\n", rcpts[i]);
			log_debug("> RCPT TO:<%s>", rcpts[i]);
		}
		len += (size_t)snprintf(buf + len, cap - len, "DATA\r\n");
		log_debug("> DATA");
		rc = net_write(&s->net, buf, len, s->t.command);
		free(buf);
		if (rc < 0)
			return -1;
		if (read_reply(s, &mail, s->t.command) < 0)
			return -1;
		for (i = 0; i < n; i++) {
			if (read_reply(s, &rr[i], s->t.command) < 0)
				return -1;
			if (mail.code / 100 != 2)
				rr[i] = mail; /* the sender was refused: so is everyone */
			else if (rr[i].code / 100 == 2)
				ok++;
		}
		if (read_reply(s, &data, s->t.data) < 0)
			return -1;
		if (data.code == 354 && ok == 0) {
			/* A server that says 354 with nobody to deliver to: end it. */
			if (net_write(&s->net, ".\r\n", 3, s->t.command) < 0 ||
			    read_reply(s, &data, s->t.dot) < 0)
				return -1;
			*final = mail.code / 100 == 2 ? rr[0] : mail;
			return 0;
		}
	} else {
		if (command(s, &mail, false, "MAIL FROM:<%s>%s", sender, params) < 0)
			return -1;
		for (i = 0; i < n; i++) {
			if (mail.code / 100 != 2) {
				rr[i] = mail;
				continue;
			}
			if (command(s, &rr[i], false, "RCPT TO:<%s>", rcpts[i]) < 0)
				return -1;
			if (rr[i].code / 100 == 2)
				ok++;
		}
		if (ok == 0) {
			*final = mail.code / 100 == 2 ? rr[0] : mail;
			return 0;
		}
		snprintf(line, sizeof(line), "DATA");
		if (send_line(s, line, false) < 0 || read_reply(s, &data, s->t.data) < 0)
			return -1;
	}
	if (ok == 0) {
		*final = mail.code / 100 == 2 ? (n > 0 ? rr[0] : data) : mail;
		return 0;
	}
	if (data.code != 354) {
		*final = data;
		return 0;
	}
	log_debug("> (message, %zu bytes)", m->wire_len);
	if (write_body(s, m) < 0)
		return -1;
	return read_reply(s, final, s->t.dot);
}

void
smtp_quit(struct smtp *s)
{
	struct smtp_reply r;

	if (s->net.fd >= 0 && send_line(s, "QUIT", false) == 0)
		(void)read_reply(s, &r, 10);
	net_close(&s->net);
}
