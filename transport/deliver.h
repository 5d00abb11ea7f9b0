/*
 * deliver.h - one pipe(8) delivery, start to finish: the route, the
 * journal, pacing, the SMTP session in the chosen mode, the outcome of
 * every recipient, and the report for a mixed outcome.
 */
#ifndef M3_DELIVER_H
#define M3_DELIVER_H

#include <limits.h>
#include <stddef.h>
#include <stdio.h>

#include "addr/cidr.h"
#include "conf/conf.h"
#include "message.h"
#include "net/outcome.h"

struct delivery {
	const struct conf *conf;
	const char *qid; /* Postfix queue id (-q) */
	/* the journal's key: the queue id, ".", the message's fingerprint
	 * (journal_key): a queue id Postfix gives again to another message
	 * never finds this one's entries */
	char jid[80];
	struct addr sender_addr; /* envelope sender (-f), parsed; null for <> */
	char sender_text[ADDR_TEXT_MAX + 1];
	const char *sender; /* its canonical form; "" for <> */
	const char *sasl;   /* SASL login of the submitter (-s), or NULL */
	bool client_given;  /* -a was given (master.cf passes ${client_address}) */
	bool have_client;   /* ... and held an address (empty: local mail) */
	struct ipaddr client;
	const char *client_text;
	const char *const *rcpts; /* canonical forms */
	size_t n_rcpts;
	struct message msg;
	const char *untrusted; /* why the route was not trusted, or NULL */
	bool to_stderr;        /* -l: log_file does not apply */
	/* LMTP (lmtp.c): n_rcpts outcomes, one per recipient, filled instead
	 * of one outcome and a report of the refused ones; NULL for pipe(8) */
	struct outcome *per_rcpt;
	/* LMTP: every recipient has its final reply; the caller drops the
	 * journal once Postfix has them (store_journal_drop), not before */
	bool journal_drop_due;
	/* LMTP: the sessions and store handle kept across messages (pool.h);
	 * NULL for pipe(8) */
	struct pool *pool;
};

/* delivery_addr - parse an address (argv, LMTP), its canonical form into
 * out (ADDR_TEXT_MAX + 1 bytes); -1 with a deferral in o if it does not */
int delivery_addr(const char *arg, bool is_sender, struct addr *a, char *out, struct outcome *o);
/* deliver - do it; the outcome decides the exit status */
void deliver(struct delivery *d, struct outcome *o);
/* pipe_status - the outcome's line on out (if any), and pipe(8)'s exit status (status.c) */
int pipe_status(const struct outcome *o, FILE *out);
/* lmtp_serve - m365-transport -L: LMTP on standard input and output, as
 * Postfix's spawn(8) connects them, until QUIT or end of input (lmtp.c);
 * the exit status */
int lmtp_serve(const char *conf_file, bool to_stderr);

enum dsn_code {
	DSN_OK,
	DSN_ELOCAL,  /* pipe, fork: this process */
	DSN_ESUBMIT, /* sendmail(1) did not take the report */
};

struct dsn_err {
	enum dsn_code code;
	char msg[PATH_MAX + 64];
};

struct oauth_token;
/* mailbox_token - mb's app token for scope (rejected: one the server
 * refused); -1 with a deferral in o (deliver.c) */
int mailbox_token(const struct delivery *d, const struct mailbox_conf *mb, const char *scope,
                  const char *rejected, struct oauth_token *tok, struct outcome *o);

/* dsn_send - report recipients that failed while others were delivered;
 * every failure defers (the journal keeps the outcomes, the retry sends
 * only the report) */
int dsn_send(const struct delivery *d, const char *const *failed, const char *const *replies,
             size_t n, struct dsn_err *err);

#endif
