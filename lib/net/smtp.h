/*
 * smtp.h - the SMTP client side of m365-transport: replies, EHLO and its
 * extensions, STARTTLS, AUTH (LOGIN, XOAUTH2), and one mail transaction
 * with per-recipient replies, pipelined when the server offers it.
 *
 * Errors: functions return 0 when the server answered (look at the reply),
 * -1 when the connection failed (s->net.err says why).  A transcript goes
 * to the debug log with AUTH payloads redacted.
 */
#ifndef M3_SMTP_H
#define M3_SMTP_H

#include <stdbool.h>
#include <stddef.h>

#include "net.h"

/* RFC 5321 section 4.5.3.2 defaults, in seconds. */
struct smtp_timeouts {
	int connect;  /* 30 */
	int greeting; /* 300 */
	int command;  /* 300: EHLO, STARTTLS, AUTH, MAIL, RCPT */
	int data;     /* 120: DATA initiation */
	int block;    /* 180: each block of the message */
	int dot;      /* 600: the final "." */
};

enum smtp_ext {
	EXT_PIPELINING = 1 << 0,
	EXT_SIZE = 1 << 1,
	EXT_8BITMIME = 1 << 2,
	EXT_SMTPUTF8 = 1 << 3,
	EXT_STARTTLS = 1 << 4,
	EXT_AUTH_LOGIN = 1 << 5,
	EXT_AUTH_XOAUTH2 = 1 << 6,
	EXT_ENHANCED = 1 << 7,
};

struct smtp_reply {
	int code;        /* 250 */
	char xcode[16];  /* "2.0.0", or "" when the server gave none */
	char text[1024]; /* the whole reply after the code, lines joined by ' ' */
	/* while it is read: */
	size_t used;
	int lines;
	bool ehlo; /* lines after the first are EHLO keywords, not text */
};

struct smtp {
	struct net net;
	struct smtp_timeouts t;
	unsigned ext;
	unsigned long size_limit; /* from SIZE, 0 if none */
	const char *helo;
};

/* smtp_reply_begin - an empty reply, before its first line */
void smtp_reply_begin(struct smtp_reply *r);
/* smtp_reply_add - one line (no CR LF): 1 the reply is complete, 0 more lines follow, -1 malformed
 * (err set) */
int smtp_reply_add(struct smtp_reply *r, const char *line, size_t n, const char **err);
/* smtp_ehlo_keyword - record the extension one EHLO line (after "250-") announces */
void smtp_ehlo_keyword(unsigned *ext, unsigned long *size_limit, const char *kw, size_t n);

int smtp_open(struct smtp *s, const char *host, unsigned port, struct smtp_reply *greeting);
int smtp_ehlo(struct smtp *s, struct smtp_reply *r);
int smtp_starttls(struct smtp *s, const struct tls_opts *o, struct smtp_reply *r);
int smtp_auth_login(struct smtp *s, const char *user, const char *password, struct smtp_reply *r);
int smtp_auth_xoauth2(struct smtp *s, const char *user, const char *token, struct smtp_reply *r);

/* One transaction: rr[i] gets recipient i's reply; *final the DATA outcome. */
struct smtp_msg {
	const char *wire; /* CRLF, dot-stuffed, ending ".\r\n" */
	size_t wire_len;
	unsigned long size; /* for SIZE= */
	bool eightbit, utf8;
};

int smtp_transaction(struct smtp *s, const char *sender, const char *const *rcpts, size_t n,
                     const struct smtp_msg *m, struct smtp_reply *rr, struct smtp_reply *final);
/* smtp_rset - RSET (a kept session, before its next transaction) */
int smtp_rset(struct smtp *s, struct smtp_reply *r);
/* smtp_quit - QUIT (best effort) and close */
void smtp_quit(struct smtp *s);

#endif
