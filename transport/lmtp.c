/*
 * lmtp.c - m365-transport -L: the delivery service for Postfix's lmtp(8).
 *
 * Postfix's spawn(8) listens on a socket in its queue directory (so a
 * chrooted lmtp(8) reaches it: lmtp:unix:private/m365lmtp) and runs one
 * m365-transport -L per connection with the socket as standard input and
 * output.  lmtp(8) keeps connections open and sends message after message
 * down one, so the configuration is read and OpenSSL set up once per
 * connection, not once per message as with pipe(8); and LMTP answers each
 * recipient on its own, so a recipient Microsoft refuses is bounced by
 * Postfix ("status=bounced" with Microsoft's reply in its log) while the
 * others are delivered, and a deferred one is retried alone.
 *
 * Each message goes through deliver() exactly as a pipe(8) delivery does
 * (route signature, journal, pacing windows, session slots, exit rules),
 * with the per-recipient outcomes mapped to LMTP replies.  What a
 * delivery opens is kept for the next message (pool.h): the state
 * store's handle, and the authenticated TLS session to Microsoft 365 of
 * each mailbox, connector or MX endpoint, RSET between messages, closed
 * after transport { session_idle } seconds unused.  What pipe(8)
 * passes on the command line comes from XFORWARD (Postfix sends it with
 * lmtp_send_xforward_command = yes): IDENT is the queue id the route is
 * signed for and the journal is keyed by, ADDR the client (Postfix has
 * no XFORWARD for the SASL login).  Without IDENT, local mail gets the key
 * local_qid() gives it; an IDENT that is not a queue id is deferred.
 *
 * Everything read is bounded: command lines (LINE_MAX), recipients
 * (MAX_RCPTS), the message (transport { max_size }); a line too long is
 * refused, a message too large is read to its end and refused per
 * recipient (5.3.4).  The session ends on QUIT, at end of input, or after
 * IDLE_S seconds without a command.
 */
#include "config.h"

#include <errno.h>
#include <openssl/evp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "deliver.h"
#include "pool.h"
#include "store/store.h"
#include "util/log.h"
#include "util/util.h"

#define LINE_MAX_LMTP 2048 /* a command line (RFC 5321: 512; XFORWARD is longer) */
#define MAX_RCPTS     1000
#define IDLE_S        300 /* Postfix's own lmtp_connection_reuse_time_limit */

/* Input and output ---------------------------------------------------------------- */

struct io {
	char in[16384];
	size_t in_off, in_len;
	char out[16384];
	size_t out_len;
	bool eof, failed;
	struct pool *pool; /* its idle sessions close on time while we wait */
};

static void
flush_out(struct io *io)
{
	size_t off = 0;

	while (off < io->out_len && !io->failed) {
		ssize_t n = write(1, io->out + off, io->out_len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			io->failed = true;
		else
			off += (size_t)n;
	}
	io->out_len = 0;
}

/* reply - one reply line (CR LF added); written when input runs dry (pipelining) */
static void reply(struct io *io, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
reply(struct io *io, const char *fmt, ...)
{
	char line[1100];
	va_list ap;
	size_t i, n;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	for (i = 0; line[i] != '\0'; i++)
		if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
			line[i] = ' '; /* a reply is one line, whatever Microsoft said */
	n = strlen(line);
	line[n++] = '\r';
	line[n++] = '\n';
	if (io->out_len + n > sizeof(io->out))
		flush_out(io);
	memcpy(io->out + io->out_len, line, n);
	io->out_len += n;
}

/* fill - more input; false at end of input, on an error or when idle too long */
static bool
fill(struct io *io)
{
	struct pollfd p = {0, POLLIN, 0};
	uint64_t give_up;
	ssize_t n;

	if (io->eof)
		return false;
	if (io->in_off > 0) {
		memmove(io->in, io->in + io->in_off, io->in_len - io->in_off);
		io->in_len -= io->in_off;
		io->in_off = 0;
	}
	flush_out(io); /* the replies so far, before we wait */
	give_up = store_now() + IDLE_S * 1000;
	for (;;) {
		uint64_t now = store_now();
		int next = io->pool != NULL ? pool_expire(io->pool, now) : -1;
		int wait = now >= give_up ? 0 : (int)(give_up - now);
		int rc;
		if (next >= 0 && next < wait)
			wait = next + 1;
		rc = poll(&p, 1, wait);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc == 0 && store_now() < give_up)
			continue; /* a kept session was due */
		if (rc <= 0)
			break;
		n = read(0, io->in + io->in_len, sizeof(io->in) - io->in_len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n > 0) {
			io->in_len += (size_t)n;
			return true;
		}
		break;
	}
	io->eof = true;
	return false;
}

/*
 * get_line - the next line without its CR LF into line (size bytes); 1 a
 * line, 0 end of input, -1 a line longer than size (skipped to its end).
 */
static int
get_line(struct io *io, char *line, size_t size, size_t *len)
{
	bool too_long = false;
	size_t n = 0;

	for (;;) {
		char *nl = memchr(io->in + io->in_off, '\n', io->in_len - io->in_off);
		size_t take = nl ? (size_t)(nl - (io->in + io->in_off)) : io->in_len - io->in_off;
		if (!too_long && n + take < size) {
			memcpy(line + n, io->in + io->in_off, take);
			n += take;
		} else {
			too_long = true;
		}
		io->in_off += take;
		if (nl != NULL) {
			io->in_off++;
			break;
		}
		if (io->in_len == sizeof(io->in) && io->in_off == io->in_len)
			io->in_off = io->in_len = 0; /* a long line: keep reading it */
		if (!fill(io))
			return 0;
	}
	if (too_long)
		return -1;
	if (n > 0 && line[n - 1] == '\r')
		n--;
	line[n] = '\0';
	*len = n;
	return 1;
}

/* The transaction ----------------------------------------------------------------- */

struct session {
	struct io io;
	const struct conf *conf;
	bool to_stderr;
	bool greeted;
	struct pool pool; /* sessions to Microsoft 365 and the store, kept */
	/* XFORWARD, for the next transaction */
	char ident[64], addr[64];
	bool have_addr;
	/* MAIL and RCPT */
	bool in_mail;
	struct addr sender_addr;
	char sender[ADDR_TEXT_MAX + 1];
	char *rcpts[MAX_RCPTS];
	size_t n_rcpts;
};

static void
reset(struct session *s)
{
	size_t i;

	for (i = 0; i < s->n_rcpts; i++)
		free(s->rcpts[i]);
	s->n_rcpts = 0;
	s->in_mail = false;
	s->ident[0] = s->addr[0] = '\0';
	s->have_addr = false;
}

/* path - the address inside "<...>" after a command's colon, in place; NULL if none */
static char *
path(char *arg)
{
	char *end;

	while (*arg == ' ')
		arg++;
	if (*arg != '<')
		return NULL;
	end = strchr(arg, '>');
	if (end == NULL || (end[1] != '\0' && end[1] != ' '))
		return NULL;
	*end = '\0';
	return arg + 1;
}

static int
hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* xtext_decode - RFC 3461 xtext ("+2B" for '+') in place; -1 if malformed
 * or if it decodes to a control character (values go into log lines) */
static int
xtext_decode(char *s)
{
	char *w = s;

	for (; *s != '\0'; s++) {
		int c = (unsigned char)*s;
		if (*s == '+') {
			int hi = hexval(s[1]), lo = hi < 0 ? -1 : hexval(s[2]);
			if (lo < 0)
				return -1;
			c = hi * 16 + lo;
			s += 2;
		}
		if (c < 0x20 || c == 0x7f)
			return -1;
		*w++ = (char)c;
	}
	*w = '\0';
	return 0;
}

static void
xforward(struct session *s, char *args)
{
	char *tok, *save = NULL;

	log_debug("LMTP: XFORWARD%s", args);
	for (tok = strtok_r(args, " ", &save); tok != NULL; tok = strtok_r(NULL, " ", &save)) {
		char *eq = strchr(tok, '=');
		if (eq == NULL || xtext_decode(eq + 1) < 0) {
			reply(&s->io, "501 5.5.4 bad XFORWARD attribute");
			return;
		}
		*eq = '\0';
		if (m3_casecmp(tok, "IDENT") == 0)
			m3_strlcpy(s->ident, eq + 1, sizeof(s->ident));
		else if (m3_casecmp(tok, "ADDR") == 0) {
			m3_strlcpy(s->addr, eq + 1, sizeof(s->addr));
			s->have_addr = true;
		}
		/* NAME, PORT, PROTO, HELO, SOURCE: not used.  Postfix has no
		 * XFORWARD for the SASL login: a route that does not verify is
		 * decided on the client address alone (stricter than pipe's -s). */
	}
	reply(&s->io, "250 2.0.0 Ok");
}

/* read_data - the message up to ".", dot-stuffing undone, CR LF to LF,
 * at most max bytes kept (*too_large past it); -1 if the input ended */
static int
read_data(struct session *s, size_t max, char **buf, size_t *len, bool *too_large)
{
	size_t cap = 65536, n = 0, ll;
	char line[16384];
	char *b = malloc(cap);
	int rc;

	*too_large = false;
	if (b == NULL)
		return -1;
	for (;;) {
		rc = get_line(&s->io, line, sizeof(line), &ll);
		if (rc == 0) {
			free(b);
			return -1;
		}
		if (rc < 0) { /* a line of 16 KiB: not mail Postfix would send; refused */
			*too_large = true;
			continue;
		}
		if (ll == 1 && line[0] == '.')
			break;
		if (*too_large)
			continue;
		{
			const char *p = line[0] == '.' ? line + 1 : line;
			size_t pl = line[0] == '.' ? ll - 1 : ll;
			if (n + pl + 1 > max) {
				*too_large = true;
				continue;
			}
			if (n + pl + 1 > cap) {
				char *nb;
				while (n + pl + 1 > cap)
					cap *= 2;
				nb = realloc(b, cap);
				if (nb == NULL) {
					free(b);
					return -1;
				}
				b = nb;
			}
			memcpy(b + n, p, pl);
			n += pl;
			b[n++] = '\n';
		}
	}
	*buf = b;
	*len = n;
	return 0;
}

/* reply_outcome - an outcome as an LMTP reply: its own "NNN text" or a code for its kind */
static void
reply_outcome(struct io *io, const struct outcome *o)
{
	const char *l = o->line;

	const char *code = o->kind == OUT_SENT ? "250" : o->kind == OUT_BOUNCE ? "550" : "451";

	/* No outcome recorded (a zeroed one reads as "sent"): never a 250,
	 * the recipient is tried again. */
	if (l[0] == '\0') {
		reply(io, "451 4.3.0 no outcome recorded for this recipient");
		return;
	}
	if (l[0] >= '2' && l[0] <= '5' && l[1] >= '0' && l[1] <= '9' && l[2] >= '0' &&
	    l[2] <= '9' && l[3] == ' ')
		reply(io, "%s", l);
	else if (l[0] >= '2' && l[0] <= '5' && l[1] == '.') /* "2.0.0 text" */
		reply(io, "%s %s", code, l);
	else /* a note first ("routed by the policy ...: 250 2.0.0 OK") */
		reply(io, "%s %c.0.0 %s", code, code[0], l);
}

/*
 * local_qid - a queue id for mail that came without XFORWARD.  Postfix
 * sends XFORWARD only when it has something of the client to say, so
 * local mail (sendmail(1), its own bounces) comes without: the id is the
 * one in the topmost Received header, which this Postfix put there
 * ("... id 4Fh3kB0x1Kz9; date"), else a digest of the sender and the
 * message, the same for every retry of one queue file (the journal's key).
 */
static int
local_qid(const struct message *m, const char *sender, char *const *rcpts, size_t n_rcpts,
          char *qid, size_t size)
{
	int ok;
	static const char alnum[] =
	    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
	unsigned char md[EVP_MAX_MD_SIZE];
	EVP_MD_CTX *c;
	size_t i;

	for (i = 0; i < m->n_fields; i++) {
		const char *f = m->raw + m->fields[i].off, *end = f + m->fields[i].len, *p;
		if (m->fields[i].len < 9 || m3_ncasecmp(f, "Received:", 9) != 0)
			continue;
		/* Postfix's own shape only: "by HOST (Postfix...) id X;" */
		if (memmem(f, m->fields[i].len, "(Postfix", 8) == NULL)
			break;
		for (p = f; p + 4 < end; p++) {
			size_t n;
			if (m3_ncasecmp(p, " id ", 4) != 0 && m3_ncasecmp(p, "\tid ", 4) != 0)
				continue;
			for (n = 0; p + 4 + n < end && strchr(alnum, p[4 + n]) != NULL; n++)
				;
			if (n >= 6 && n <= 32 && n < size && p + 4 + n < end && p[4 + n] == ';') {
				memcpy(qid, p + 4, n);
				qid[n] = '\0';
				return 0;
			}
		}
		break; /* only the topmost one is this Postfix's */
	}
	c = EVP_MD_CTX_new();
	ok = c != NULL && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1 &&
	     EVP_DigestUpdate(c, sender, strlen(sender) + 1) == 1 &&
	     EVP_DigestUpdate(c, m->raw, m->raw_len) == 1;
	/* and the recipients: Postfix retries exactly the ones it has no
	 * answer for, so a retry after lost replies has the same key */
	for (i = 0; ok && i < n_rcpts; i++)
		ok = EVP_DigestUpdate(c, rcpts[i], strlen(rcpts[i]) + 1) == 1;
	ok = ok && EVP_DigestFinal_ex(c, md, NULL) == 1;
	EVP_MD_CTX_free(c);
	if (!ok || size < 25)
		return -1; /* no key shared by two messages, ever: defer instead */
	for (i = 0; i < 12; i++)
		snprintf(qid + 2 * i, 3, "%02X", md[i]);
	return 0;
}

static void
deliver_one(struct session *s, char *data, size_t len)
{
	struct delivery d;
	struct outcome o, *per;
	struct msg_err me;
	size_t i;

	memset(&d, 0, sizeof(d));
	memset(&o, 0, sizeof(o));
	per = calloc(s->n_rcpts, sizeof(*per));
	if (per == NULL) {
		free(data);
		for (i = 0; i < s->n_rcpts; i++)
			reply(&s->io, "451 4.3.0 out of memory");
		return;
	}
	pool_drops_due(&s->pool, store_now()); /* not held back by this delivery */
	d.conf = s->conf;
	d.to_stderr = s->to_stderr;
	d.qid = s->ident;
	if (message_parse(data, len, &d.msg, &me) < 0) {
		outcome_local(&o, OUT_DEFER, "4.3.0", "%s", me.msg);
		log_warnx("LMTP: %s", o.line);
		goto reply;
	}
	if (s->ident[0] == '\0' &&
	    local_qid(&d.msg, s->sender, s->rcpts, s->n_rcpts, s->ident, sizeof(s->ident)) < 0) {
		outcome_local(&o, OUT_DEFER, "4.3.0", "no key for the journal (digest failed)");
		log_warnx("LMTP: %s", o.line);
		goto reply;
	}
	if (!s->have_addr || strcmp(s->addr, "[UNAVAILABLE]") == 0) {
		/* No client (no XFORWARD at all, or ADDR=[UNAVAILABLE]): local
		 * mail, as pipe(8) with an empty -a.  Anything else, even an
		 * address we cannot read, is a client: never local. */
		s->have_addr = true;
		s->addr[0] = '\0';
		log_info("%s: local mail (no client address from Postfix)", s->ident);
	}
	d.sender_addr = s->sender_addr;
	m3_strlcpy(d.sender_text, s->sender, sizeof(d.sender_text));
	d.sender = d.sender_text;
	d.sasl = NULL;
	d.client_given = s->have_addr;
	d.have_client = s->addr[0] != '\0' && ip_parse(s->addr, &d.client) == 0;
	d.client_text = s->addr;
	d.rcpts = (const char *const *)s->rcpts;
	d.n_rcpts = s->n_rcpts;
	d.per_rcpt = per;
	d.pool = &s->pool;
	deliver(&d, &o);
reply:
	for (i = 0; i < s->n_rcpts; i++)
		reply_outcome(&s->io, per[i].line[0] != '\0' ? &per[i] : &o);
	flush_out(&s->io);
	/* Postfix has every reply: the queue file's journal goes, with the
	 * next batch (pool.h) */
	if (d.journal_drop_due && !s->io.failed)
		pool_drop_journal(&s->pool, d.jid, d.qid, d.rcpts, d.n_rcpts);
	message_free(&d.msg);
	free(per);
}

static void
data_cmd(struct session *s)
{
	bool too_large;
	char *buf = NULL;
	size_t len = 0, i;
	/* No IDENT (local mail, bounces): the id is found in deliver_one(). */
	bool qid_ok =
	    s->ident[0] == '\0' ||
	    (strspn(s->ident, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") ==
	         strlen(s->ident) &&
	     strlen(s->ident) <= 32);

	if (!s->in_mail || s->n_rcpts == 0) {
		reply(&s->io, "503 5.5.1 need MAIL and RCPT first");
		return;
	}
	reply(&s->io, "354 End data with <CR><LF>.<CR><LF>");
	if (read_data(s, s->conf->transport.max_size, &buf, &len, &too_large) < 0) {
		s->io.eof = true;
		return;
	}
	if (too_large) {
		free(buf);
		for (i = 0; i < s->n_rcpts; i++)
			reply(&s->io, "552 5.3.4 message larger than transport { max_size } (%lu)",
			      s->conf->transport.max_size);
	} else if (!qid_ok) {
		free(buf);
		log_warnx("LMTP: XFORWARD IDENT is not a queue id: message deferred");
		for (i = 0; i < s->n_rcpts; i++)
			reply(&s->io, "451 4.3.5 XFORWARD IDENT is not a Postfix queue id");
	} else {
		deliver_one(s, buf, len); /* the message takes buf over */
	}
	reset(s);
}

static void
mail_cmd(struct session *s, char *arg)
{
	struct outcome o;
	char *p = path(arg);

	if (s->in_mail) {
		reply(&s->io, "503 5.5.1 nested MAIL command");
		return;
	}
	if (p == NULL) {
		reply(&s->io, "501 5.5.4 syntax: MAIL FROM:<address>");
		return;
	}
	/* The null sender is "<>" for the parser, as pipe(8) sends it. */
	if (delivery_addr(p[0] == '\0' ? "<>" : p, true, &s->sender_addr, s->sender, &o) < 0) {
		reply(&s->io, "451 %s", o.line); /* deferred, as pipe(8) would */
		return;
	}
	s->in_mail = true;
	reply(&s->io, "250 2.1.0 Ok");
}

static void
rcpt_cmd(struct session *s, char *arg)
{
	struct outcome o;
	struct addr a;
	char *p = path(arg), *c;

	if (!s->in_mail) {
		reply(&s->io, "503 5.5.1 need MAIL first");
		return;
	}
	if (p == NULL) {
		reply(&s->io, "501 5.5.4 syntax: RCPT TO:<address>");
		return;
	}
	if (s->n_rcpts == MAX_RCPTS) {
		reply(&s->io, "452 4.5.3 too many recipients");
		return;
	}
	c = malloc(ADDR_TEXT_MAX + 1);
	if (c == NULL) {
		reply(&s->io, "451 4.3.0 out of memory");
		return;
	}
	if (delivery_addr(p, false, &a, c, &o) < 0) {
		free(c);
		reply(&s->io, "451 %s", o.line); /* deferred, as pipe(8) would */
		return;
	}
	s->rcpts[s->n_rcpts++] = c;
	reply(&s->io, "250 2.1.5 Ok");
}

static bool
is_cmd(const char *line, const char *cmd, char **arg)
{
	size_t n = strlen(cmd);

	if (m3_ncasecmp(line, cmd, n) != 0 ||
	    (line[n] != '\0' && line[n] != ' ' && cmd[n - 1] != ':'))
		return false;
	*arg = (char *)line + n;
	return true;
}

int
lmtp_serve(const char *conf_file, bool to_stderr)
{
	struct session *s = calloc(1, sizeof(*s));
	char line[LINE_MAX_LMTP], *arg;
	char host[256] = "localhost";
	size_t len;
	bool from_snapshot;
	int rc;

	if (s == NULL)
		return 1;
	s->to_stderr = to_stderr;
	gethostname(host, sizeof(host) - 1);
	s->conf = conf_load_fast(conf_file, &from_snapshot);
	if (s->conf == NULL) {
		reply(&s->io,
		      "421 4.3.5 configuration %s has errors (m365ctl check-config shows them)",
		      conf_file);
		flush_out(&s->io);
		free(s);
		return 1;
	}
	if (s->conf->log_file != NULL && !to_stderr && log_to_file(s->conf->log_file) < 0)
		log_warn("log_file %s (logging to syslog instead)", s->conf->log_file);
	pool_init(&s->pool, s->conf);
	s->io.pool = &s->pool;
	reply(&s->io, "220 %s m365-transport LMTP", host);
	while (!s->io.failed) {
		rc = get_line(&s->io, line, sizeof(line), &len);
		if (rc == 0)
			break;
		if (rc < 0) {
			reply(&s->io, "500 5.5.2 line too long");
			continue;
		}
		if (is_cmd(line, "LHLO", &arg)) {
			reset(s);
			s->greeted = true;
			reply(&s->io, "250-%s", host);
			reply(&s->io, "250-PIPELINING");
			reply(&s->io, "250-ENHANCEDSTATUSCODES");
			reply(&s->io, "250-8BITMIME");
			reply(&s->io, "250-SIZE %lu", s->conf->transport.max_size);
			reply(&s->io, "250 XFORWARD NAME ADDR PORT PROTO HELO IDENT SOURCE");
		} else if (!s->greeted && !is_cmd(line, "QUIT", &arg) &&
		           !is_cmd(line, "NOOP", &arg)) {
			reply(&s->io, "503 5.5.1 LHLO first");
		} else if (is_cmd(line, "XFORWARD", &arg)) {
			if (s->in_mail)
				reply(&s->io, "503 5.5.1 XFORWARD inside a transaction");
			else
				xforward(s, arg);
		} else if (is_cmd(line, "MAIL FROM:", &arg)) {
			mail_cmd(s, arg);
		} else if (is_cmd(line, "RCPT TO:", &arg)) {
			rcpt_cmd(s, arg);
		} else if (is_cmd(line, "DATA", &arg)) {
			data_cmd(s);
		} else if (is_cmd(line, "RSET", &arg)) {
			reset(s);
			reply(&s->io, "250 2.0.0 Ok");
		} else if (is_cmd(line, "NOOP", &arg)) {
			reply(&s->io, "250 2.0.0 Ok");
		} else if (is_cmd(line, "QUIT", &arg)) {
			reply(&s->io, "221 2.0.0 Bye");
			break;
		} else {
			reply(&s->io, "500 5.5.2 command not recognised");
		}
	}
	flush_out(&s->io);
	reset(s);
	pool_close(&s->pool);
	conf_free((struct conf *)s->conf);
	free(s);
	return 0;
}
