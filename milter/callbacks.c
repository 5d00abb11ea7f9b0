/*
 * callbacks.c - the libmilter callbacks: the only file that calls smfi_*.
 *
 * Each callback translates what the MTA says into the policy engine's
 * structs, calls the engine, and translates its verdict back into milter
 * replies and message changes.  No decision is made here.
 *
 * Failure outcomes are chosen in one place, internal_error(): an
 * unexpected failure (out of memory, an smfi_* call refused) answers what
 * `milter { on_error }` says, tempfail by default, so nothing is lost.
 * Malformed input is not an internal error: the policy answers it.
 */
#include "config.h"

#include <libmilter/mfapi.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "milter.h"
#include "policy/hdrset.h"
#include "policy/policy.h"
#include "policy/route.h"
#include "util/util.h"

/* Per connection (and the message in progress on it). */
struct mctx {
	struct snapshot *snap;
	struct ipaddr client;
	bool have_client;
	bool nr_hdr; /* the MTA does not wait for a reply to each header */

	bool in_msg, logged;
	bool at_eom; /* end of message reached: the verdict is the message's */
	char qid[64];
	struct policy_msg pm;
	struct hdrset hdr;    /* the headers the policy reads */
	struct reply refusal; /* the last recipient refusal, for the log */
	bool refused;
};

/* Helpers ----------------------------------------------------------------------- */

static void
msg_reset(struct mctx *m)
{
	hdrset_clear(&m->hdr);
	m->in_msg = m->logged = m->at_eom = false;
	m->qid[0] = '\0';
	m->refused = false;
	memset(&m->pm, 0, sizeof(m->pm));
}

static const char *
qid(const struct mctx *m)
{
	return m->qid[0] ? m->qid : "NOQUEUE";
}

/* msg_log - the one line per message: its whole story for an operator */
static void
msg_log(struct mctx *m)
{
	char buf[2048];

	if (m->logged || !m->in_msg)
		return;
	m->logged = true;
	if (m->pm.reply.verdict == VERDICT_ACCEPT && !m->at_eom) {
		/* The transaction ended before end of message. */
		if (m->refused && m->pm.n_internal + m->pm.n_external == 0) {
			m->pm.reply = m->refusal; /* every recipient was refused */
		} else {
			m->pm.reply.verdict = VERDICT_NONE;
			m->pm.reply.reason = REASON_ABORTED;
		}
	}
	policy_summary(&m->pm, buf, sizeof(buf));
	metrics_count(m->pm.reply.verdict, m->pm.reply.reason);
	if (m->pm.reply.verdict == VERDICT_REJECT || m->pm.reply.verdict == VERDICT_TEMPFAIL)
		log_info("%s: %s reply=\"%s %s %s\"", qid(m), buf, m->pm.reply.code,
		         m->pm.reply.xcode, m->pm.reply.text);
	else
		log_info("%s: %s", qid(m), buf);
}

/*
 * set_reply - smfi_setreply with text made safe for it: libmilter treats
 * the text as a format (a lone '%' voids it) and refuses CR or LF.
 */
static int
set_reply(SMFICTX *ctx, const struct reply *r)
{
	char text[sizeof(r->text) * 2];
	size_t i, o = 0;

	for (i = 0; r->text[i] != '\0' && o + 3 < sizeof(text); i++) {
		unsigned char ch = (unsigned char)r->text[i];
		if (ch == '%') {
			text[o++] = '%';
			text[o++] = '%';
		} else {
			text[o++] = (char)(ch < 0x20 || ch == 0x7f ? ' ' : ch);
		}
	}
	text[o] = '\0';
	return smfi_setreply(ctx, (char *)r->code, (char *)r->xcode, text);
}

static sfsistat
verdict_status(SMFICTX *ctx, const struct reply *r)
{
	if (r->verdict == VERDICT_ACCEPT)
		return SMFIS_CONTINUE;
	if (set_reply(ctx, r) != MI_SUCCESS)
		log_warnx("smfi_setreply refused \"%s %s %s\"", r->code, r->xcode, r->text);
	return r->verdict == VERDICT_REJECT ? SMFIS_REJECT : SMFIS_TEMPFAIL;
}

/* internal_error - the configured answer when we cannot decide */
static sfsistat
internal_error(SMFICTX *ctx, struct mctx *m, const char *what)
{
	enum fail_action act = FAIL_TEMPFAIL;
	enum verdict v;
	struct reply r;

	if (m != NULL && m->snap != NULL)
		act = m->snap->conf->milter.on_error;
	v = act == FAIL_ACCEPT   ? VERDICT_ACCEPT
	    : act == FAIL_REJECT ? VERDICT_REJECT
	                         : VERDICT_TEMPFAIL;

	log_errx("%s: internal error: %s; answering %s", m ? qid(m) : "NOQUEUE", what,
	         verdict_name(v));
	if (m != NULL)
		m->logged = true;
	metrics_count(v, REASON_INTERNAL_ERROR);
	memset(&r, 0, sizeof(r));
	switch (act) {
	case FAIL_ACCEPT:
		return SMFIS_ACCEPT;
	case FAIL_REJECT:
		r.verdict = VERDICT_REJECT;
		m3_strlcpy(r.code, "550", sizeof(r.code));
		m3_strlcpy(r.xcode, "5.3.0", sizeof(r.xcode));
		m3_strlcpy(r.text, "Gateway internal error", sizeof(r.text));
		break;
	case FAIL_TEMPFAIL:
		r.verdict = VERDICT_TEMPFAIL;
		m3_strlcpy(r.code, "451", sizeof(r.code));
		m3_strlcpy(r.xcode, "4.3.0", sizeof(r.xcode));
		m3_strlcpy(r.text, "Gateway temporary internal error; try again later",
		           sizeof(r.text));
		break;
	}
	return verdict_status(ctx, &r);
}

static struct mctx *
mctx_of(SMFICTX *ctx)
{
	struct mctx *m = smfi_getpriv(ctx);

	if (m == NULL) {
		m = calloc(1, sizeof(*m));
		if (m == NULL || smfi_setpriv(ctx, m) != MI_SUCCESS) {
			free(m);
			return NULL;
		}
	}
	return m;
}

static const char *
macro(SMFICTX *ctx, const char *name)
{
	const char *v = smfi_getsymval(ctx, (char *)name);
	return v != NULL && v[0] != '\0' ? v : NULL;
}

/* Callbacks ----------------------------------------------------------------------- */

/*
 * Ask only for what the policy uses: no HELO, body, end-of-header or
 * unknown-command callbacks, and no reply to each header, so the MTA sends
 * less and waits less.  The macros the policy needs at MAIL are requested
 * explicitly ({cert_subject} is a HELO macro in Postfix's defaults).
 *
 * DATA is kept on purpose: with SMFIP_NODATA Postfix still sends the DATA
 * macros, alone, and its first header then waits (Nagle) for our delayed
 * ACK of a packet we never answer: 40 ms a message over TCP.  Answering
 * DATA (libmilter does it: no callback) carries the ACK at once; over
 * TCP this took throughput from 0.17 to 0.79 of Postfix without a milter
 * (bench/milter-overhead.sh, 2 sessions).
 */
static sfsistat
cb_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1, unsigned long f2, unsigned long f3,
             unsigned long *pf0, unsigned long *pf1, unsigned long *pf2, unsigned long *pf3)
{
	const unsigned long actions =
	    SMFIF_CHGFROM | SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_SETSYMLIST;
	const unsigned long steps =
	    SMFIP_NOHELO | SMFIP_NOBODY | SMFIP_NOUNKNOWN | SMFIP_NOEOH | SMFIP_NR_HDR;
	struct mctx *m = mctx_of(ctx);

	(void)f2;
	(void)f3;
	if (m == NULL)
		return SMFIS_TEMPFAIL;
	if ((f0 & (SMFIF_CHGFROM | SMFIF_ADDHDRS | SMFIF_CHGHDRS)) !=
	    (SMFIF_CHGFROM | SMFIF_ADDHDRS | SMFIF_CHGHDRS))
		log_errx("the MTA does not offer changing the sender and headers "
		         "(milter protocol 6); messages that need a rewrite will "
		         "be answered with on_error");
	*pf0 = f0 & actions;
	*pf1 = f1 & steps;
	*pf2 = *pf3 = 0;
	m->nr_hdr = (*pf1 & SMFIP_NR_HDR) != 0;
	if (f0 & SMFIF_SETSYMLIST) {
		smfi_setsymlist(ctx, SMFIM_ENVFROM, "{auth_authen} {cert_subject} {i} i");
		smfi_setsymlist(ctx, SMFIM_EOM, "i");
		/* Nothing at CONNECT: a name no MTA defines (Postfix then sends
		 * an empty macro packet, which costs nothing more).  The queue
		 * id at RCPT: Postfix opens the queue file only at the first
		 * accepted recipient (smtpd_delay_open_until_valid_rcpt), so
		 * {i} is often empty at MAIL, and a refusal of a later
		 * recipient should name the queue id Postfix logs. */
		smfi_setsymlist(ctx, SMFIM_CONNECT, "{m365relay_none}");
		smfi_setsymlist(ctx, SMFIM_ENVRCPT, "i");
	}
	return SMFIS_CONTINUE;
}

static sfsistat
cb_connect(SMFICTX *ctx, char *host, _SOCK_ADDR *addr)
{
	struct mctx *m = mctx_of(ctx);

	(void)host;
	if (m == NULL)
		return internal_error(ctx, NULL, "out of memory at connect");
	m->have_client = ip_from_sockaddr(addr, &m->client) == 0;
	return SMFIS_CONTINUE;
}

static sfsistat
cb_envfrom(SMFICTX *ctx, char **argv)
{
	struct mctx *m = mctx_of(ctx);
	struct identity id = {0};
	const char *q;

	if (m == NULL)
		return internal_error(ctx, NULL, "out of memory at MAIL");
	msg_log(m);
	msg_reset(m);
	/* Each message uses the configuration current when it starts. */
	snap_put(m->snap);
	m->snap = snap_get();
	if (m->snap == NULL)
		return internal_error(ctx, m, "no configuration");
	m->in_msg = true;
	q = macro(ctx, "i");
	if (q == NULL)
		q = macro(ctx, "{i}");
	if (q != NULL)
		m3_strlcpy(m->qid, q, sizeof(m->qid));

	id.client = m->have_client ? &m->client : NULL;
	id.sasl_login = macro(ctx, "{auth_authen}");
	id.cert_subject = macro(ctx, "{cert_subject}");
	policy_mail(m->snap->conf, &id, argv[0], &m->pm);
	if (m->pm.reply.verdict != VERDICT_ACCEPT)
		msg_log(m);
	return verdict_status(ctx, &m->pm.reply);
}

static sfsistat
cb_envrcpt(SMFICTX *ctx, char **argv)
{
	struct mctx *m = smfi_getpriv(ctx);
	struct rcpt_verdict rv;
	const char *q;

	if (m == NULL || m->snap == NULL || !m->in_msg)
		return internal_error(ctx, m, "RCPT without MAIL");
	if (m->qid[0] == '\0' && (q = macro(ctx, "i")) != NULL)
		m3_strlcpy(m->qid, q, sizeof(m->qid));
	policy_rcpt(m->snap->conf, &m->pm, argv[0], &rv);
	if (rv.reply.verdict != VERDICT_ACCEPT) {
		m->refusal = rv.reply;
		m->refused = true;
		log_info("%s: recipient %s refused: %s %s %s reason=%s", qid(m), argv[0],
		         rv.reply.code, rv.reply.xcode, rv.reply.text,
		         reason_name(rv.reply.reason));
	}
	return verdict_status(ctx, &rv.reply);
}

static sfsistat
cb_header(SMFICTX *ctx, char *name, char *value)
{
	struct mctx *m = smfi_getpriv(ctx);

	if (m == NULL || !m->in_msg)
		return internal_error(ctx, m, "header outside a message");
	if (hdrset_add(&m->hdr, hdr_kind(name, strlen(name)), value, strlen(value)) < 0)
		return internal_error(ctx, m, "out of memory keeping a header");
	return m->nr_hdr ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}

/* count_of - how many fields of a header the message has (for deletion) */
static size_t
count_of(const struct mctx *m, const char *header)
{
	switch (hdr_kind(header, strlen(header))) {
	case HDR_FROM:
		return m->hdr.n_from;
	case HDR_SENDER:
		return m->hdr.n_sender;
	case HDR_REPLY_TO:
		return m->hdr.n_reply_to;
	case HDR_ROUTE:
		return m->hdr.n_route;
	case HDR_OTHER:
		break;
	}
	return 0;
}

/*
 * add_route - the route header, signed with the first route key for this
 * queue id and the sender the message leaves with (route.h).
 */
static int
add_route(SMFICTX *ctx, struct mctx *m)
{
	const struct conf *c = m->snap->conf;
	struct route route;
	char buf[ROUTE_TEXT_MAX];
	int n;

	route_from_policy(&m->pm, &route);
	if (c->n_route_keys > 0)
		n = route_sign(&route, qid(m), &m->pm.final_sender, &c->route_keys[0], buf,
		               sizeof(buf));
	else
		n = route_format(&route, buf, sizeof(buf));
	return n < 0 || smfi_addheader(ctx, ROUTE_HEADER, buf) != MI_SUCCESS ? -1 : 0;
}

/*
 * apply - the policy's edit list as milter actions.  The milter removes a
 * header by its index among the fields of that name, last first, so the
 * indexes of those still to go do not move.
 */
static const char *
apply(SMFICTX *ctx, struct mctx *m, const struct edits *e)
{
	char a[ADDR_TEXT_MAX + 3];
	size_t i, k;

	for (i = 0; i < e->n; i++) {
		const struct edit *x = &e->e[i];
		switch (x->op) {
		case EDIT_SENDER:
			if (snprintf(a, sizeof(a), "<%s>", x->value) >= (int)sizeof(a))
				return "sender too long";
			if (smfi_chgfrom(ctx, a, NULL) != MI_SUCCESS)
				return "cannot change the envelope sender";
			break;
		case EDIT_HEADER_SET:
			if (smfi_chgheader(ctx, (char *)x->header, 1, (char *)x->value) !=
			    MI_SUCCESS)
				return "cannot change a header";
			break;
		case EDIT_HEADER_ADD:
			if (smfi_addheader(ctx, (char *)x->header, (char *)x->value) != MI_SUCCESS)
				return "cannot add a header";
			break;
		case EDIT_HEADER_DROP:
		case EDIT_ROUTE:
			for (k = count_of(m, x->header); k > 0; k--)
				if (smfi_chgheader(ctx, (char *)x->header, (int)k, NULL) !=
				    MI_SUCCESS)
					return "cannot remove a header";
			if (x->op == EDIT_ROUTE && add_route(ctx, m) < 0)
				return "cannot add the route header";
			break;
		}
	}
	return NULL;
}

static sfsistat
cb_eom(SMFICTX *ctx)
{
	struct mctx *m = smfi_getpriv(ctx);
	struct msg_headers h;
	struct edits edits;
	const char *q, *failed;

	if (m == NULL || m->snap == NULL || !m->in_msg)
		return internal_error(ctx, m, "end of message without MAIL");
	if (m->qid[0] == '\0' && (q = macro(ctx, "i")) != NULL)
		m3_strlcpy(m->qid, q, sizeof(m->qid)); /* Sendmail sets {i} late */

	m->at_eom = true;
	hdrset_view(&m->hdr, &h);
	policy_eom(m->snap->conf, &m->snap->facts, &m->pm, &h);
	if (m->pm.reply.verdict == VERDICT_ACCEPT) {
		/* Step 6: the mailbox's limits, at SMTP time when so configured. */
		struct reply ar;
		admission(m->snap->conf, &m->pm, &ar);
		if (ar.verdict != VERDICT_ACCEPT)
			m->pm.reply = ar;
	}
	if (m->pm.reply.verdict != VERDICT_ACCEPT) {
		msg_log(m);
		return verdict_status(ctx, &m->pm.reply);
	}
	policy_edits(&m->pm, &edits);
	if ((failed = apply(ctx, m, &edits)) != NULL)
		return internal_error(ctx, m, failed);
	msg_log(m);
	msg_reset(m);
	return SMFIS_CONTINUE;
}

static sfsistat
cb_abort(SMFICTX *ctx)
{
	struct mctx *m = smfi_getpriv(ctx);

	if (m != NULL) {
		msg_log(m);
		msg_reset(m);
	}
	return SMFIS_CONTINUE;
}

static sfsistat
cb_close(SMFICTX *ctx)
{
	struct mctx *m = smfi_getpriv(ctx);

	if (m != NULL) {
		msg_log(m);
		msg_reset(m);
		snap_put(m->snap);
		free(m);
		smfi_setpriv(ctx, NULL);
	}
	return SMFIS_CONTINUE;
}

/* Registration --------------------------------------------------------------------- */

static struct smfiDesc desc = {
    .xxfi_name = "m365-milter",
    .xxfi_version = SMFI_VERSION,
    .xxfi_flags = SMFIF_CHGFROM | SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_SETSYMLIST,
    .xxfi_connect = cb_connect,
    .xxfi_envfrom = cb_envfrom,
    .xxfi_envrcpt = cb_envrcpt,
    .xxfi_header = cb_header,
    .xxfi_eom = cb_eom,
    .xxfi_abort = cb_abort,
    .xxfi_close = cb_close,
    .xxfi_negotiate = cb_negotiate,
};

int
milter_register(void)
{
	if (smfi_register(desc) != MI_SUCCESS) {
		log_errx("smfi_register failed");
		return -1;
	}
	return 0;
}

/*
 * nodelay_listener - TCP_NODELAY on libmilter's inet listening socket.
 * At end of message libmilter writes each modification (chgfrom, each
 * header) as its own small packet; with Nagle's algorithm every one after
 * the first waits for the MTA's delayed ACK (40 ms on Linux), which cost
 * about 90 ms a message over inet (bench/milter-overhead.sh).  libmilter
 * has no hook for the sockets it accepts, but on Linux they inherit
 * TCP_NODELAY from the listener, and libmilter's is the only listening
 * socket open at this point.
 */
static void
nodelay_listener(void)
{
	int fd, one = 1;

	for (fd = 3; fd < 1024; fd++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss), l;
		int acc = 0;

		l = sizeof(acc);
		if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &l) < 0 || !acc ||
		    getsockname(fd, (struct sockaddr *)&ss, &sl) < 0 ||
		    (ss.ss_family != AF_INET && ss.ss_family != AF_INET6))
			continue;
		if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
			log_warn("TCP_NODELAY on the milter socket");
	}
}

int
milter_open(const struct conf *conf)
{
	const char *sock = conf->milter.socket;

	if (smfi_setconn((char *)sock) != MI_SUCCESS) {
		log_errx("milter socket %s: not usable", sock);
		return -1;
	}
	smfi_settimeout(conf->milter.timeout);
	/* true: remove a stale unix socket left by a crash. */
	if (smfi_opensocket(true) != MI_SUCCESS) {
		log_errx("milter socket %s: cannot listen (in use, or no "
		         "permission?)",
		         sock);
		return -1;
	}
	nodelay_listener();
	return 0;
}

int
milter_run(void)
{
	return smfi_main() == MI_SUCCESS ? 0 : -1;
}
