/*
 * cmd_doctor.c - m365ctl doctor [--json] [--connect]: what Microsoft 365
 * will think of this gateway before any mail flows.  Per tenant: its
 * endpoints are DNS names; per accepted domain: SPF (libspf2's verdict for
 * egress_ip, and the record's shape) and MX; per connector and app: the
 * certificate (names, key, chain, dates) and the credential files; with
 * --connect, each endpoint's TCP, STARTTLS and EHLO (the HVE endpoint too
 * when a mailbox is an HVE account), and for a mailbox that sends through
 * Graph a token for the Graph scope and a request that sends nothing.
 *
 * Every finding is ok, warning or error; an error carries its fix.  The
 * exit status is 0 when there is no error, 1 otherwise, 2 for usage.
 */
#include "config.h"

#include <getopt.h>
#include <grp.h>
#include <json-c/json.h>
#include <openssl/x509v3.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "net/curl_dl.h"
#include "net/certcheck.h"
#include "cli.h"
#include "graph_probe.h"
#include "net/oauth.h"
#include "doctor.h"
#include "util/sbuf.h"
#include "net/dns.h"
#include "conf/runtime.h"
#include "net/smtp.h"
#include "net/spf.h"
#include "util/util.h"

#define CONNECT_TIMEOUT 10

/* join - append item to a ", "-separated list in buf (what does not fit is left out) */
static void
join(char *buf, size_t size, const char *item)
{
	struct sbuf b;

	sbuf_init(&b, size - 1);
	if (sbuf_adds(&b, buf) == 0 && sbuf_addf(&b, "%s%s", buf[0] ? ", " : "", item) == 0)
		m3_strlcpy(buf, sbuf_str(&b), size);
	sbuf_free(&b);
}

static const char *const level_name[] = {"ok", "warning", "error"};

void
doctor_add(struct doctor *d, enum level lvl, const char *subject, const char *check,
           const char *fix, const char *fmt, ...)
{
	struct finding *f;
	va_list ap;

	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 32;
		f = realloc(d->f, cap * sizeof(*f));
		if (f == NULL) {
			d->oom = true;
			return;
		}
		d->f = f;
		d->cap = cap;
	}
	f = &d->f[d->n++];
	m3_strlcpy(f->subject, subject, sizeof(f->subject));
	m3_strlcpy(f->check, check, sizeof(f->check));
	f->level = lvl;
	va_start(ap, fmt);
	vsnprintf(f->text, sizeof(f->text), fmt, ap);
	va_end(ap);
	m3_strlcpy(f->fix, fix != NULL ? fix : "", sizeof(f->fix));
	if (lvl == LVL_ERR)
		d->n_err++;
	else if (lvl == LVL_WARN)
		d->n_warn++;
}

/* Endpoints --------------------------------------------------------------------- */

static void
check_endpoints(struct doctor *d, const struct tenant *t)
{
	char subj[300], form[300], fix[600];
	size_t i;
	bool form_ok = false;

	/* IP addresses are refused by conf.c (need_name). */
	snprintf(subj, sizeof(subj), "tenant %s", t->name);
	doctor_add(d, LVL_OK, subj, "endpoint", NULL, "smtp_host %s port %u is a DNS name",
	           t->smtp_host, t->smtp_port);
	if (t->mx_endpoint == NULL)
		return;
	for (i = 0; i < t->n_accepted && !form_ok; i++) {
		if (t->accepted[i][0] == '*')
			continue;
		mx_endpoint_form(t->accepted[i], form, sizeof(form));
		form_ok = m3_casecmp(form, t->mx_endpoint) == 0;
	}
	if (form_ok) {
		doctor_add(d, LVL_OK, subj, "endpoint", NULL,
		           "mx_endpoint %s has the <domain>-<tld>.mail.protection.outlook.com form",
		           t->mx_endpoint);
	} else {
		mx_endpoint_form(t->n_accepted ? t->accepted[0] : "contoso.com", form,
		                 sizeof(form));
		snprintf(fix, sizeof(fix),
		         "copy the MX value from the Microsoft 365 admin center (Settings > "
		         "Domains > DNS records), e.g. mx_endpoint = \"%s\"",
		         form);
		doctor_add(d, LVL_WARN, subj, "endpoint", fix,
		           "mx_endpoint %s is not <domain>-<tld>.mail.protection.outlook.com for "
		           "any accepted domain",
		           t->mx_endpoint);
	}
}

/* SPF and MX ----------------------------------------------------------------------- */

static void
check_spf(struct doctor *d, const struct tenant *t, const char *domain)
{
	struct spf_report r;
	struct spf_err err;
	char fix[DNS_TXT_MAX + 256];

	if (spf_inspect(d->dns, NULL, domain, t->egress_ip, &r, &err) < 0) {
		static const char *const fixes[] = {
		    [SPF_OK] = "",
		    [SPF_ETEMP] = "check the resolver in /etc/resolv.conf and that the domain's "
		                  "name servers answer",
		    [SPF_EANSWER] = "the domain's name servers send an answer that cannot be "
		                    "read: check the zone with dig",
		    [SPF_ELOCAL] = "the machine is short of memory; run doctor again"};

		doctor_add(d, LVL_ERR, domain, "spf", fixes[err.code],
		           "the SPF record could not be read: %s", err.msg);
		return;
	}
	if (r.nxdomain) {
		doctor_add(d, LVL_ERR, domain, "spf",
		           "check the spelling in accepted_domains, or publish the domain's zone",
		           "%s does not exist in DNS (NXDOMAIN): no SPF record can be found, and "
		           "receivers refuse mail from a domain that does not exist",
		           domain);
		return;
	}
	snprintf(fix, sizeof(fix), "publish one TXT record at %s: \"%s\"", domain, r.suggestion);
	if (r.n_records == 0) {
		doctor_add(d, LVL_ERR, domain, "spf", fix,
		           "no SPF record: receivers cannot tell the "
		           "gateway's mail from forgeries");
		return;
	}
	if (r.n_records > 1) {
		char merged[DNS_TXT_MAX + 256];
		snprintf(merged, sizeof(merged), "merge them into one TXT record at %s: \"%s\"",
		         domain, r.suggestion);
		doctor_add(
		    d, LVL_ERR, domain, "spf", merged,
		    "more than one SPF record: every SPF check gives permerror (RFC 7208 3.2)");
		return;
	}
	if (r.lookups > SPF_MAX_LOOKUPS)
		doctor_add(d, LVL_ERR, domain, "spf",
		           "remove includes you no longer need, or replace them by the ip4:/ip6: "
		           "ranges they stand for",
		           "more than the %d DNS look-ups SPF allows (counted %d before "
		           "stopping): permerror (\"%s\")",
		           SPF_MAX_LOOKUPS, r.lookups, r.record);
	if (r.plus_all)
		doctor_add(d, LVL_ERR, domain, "spf", fix,
		           "\"%s\" ends in +all: any host on the Internet passes", r.record);
	if (!r.has_m365_include)
		doctor_add(d, LVL_ERR, domain, "spf", fix,
		           "no include:%s: mail Microsoft 365 sends for %s fails SPF",
		           SPF_M365_INCLUDE, domain);
	if (t->egress_ip == NULL)
		doctor_add(d, LVL_WARN, domain, "spf",
		           "set egress_ip in the tenant to the gateway's public address",
		           "egress_ip is not set: cannot tell whether the gateway's own mail "
		           "(Direct Send, relay) passes");
	else if (!r.pass)
		doctor_add(
		    d, LVL_ERR, domain, "spf", fix,
		    "the gateway's address %s gets SPF %s from \"%s\": Direct Send and relay "
		    "mail lands in junk or is refused",
		    t->egress_ip, r.result, r.record);
	if (r.suggestion[0] == '\0' && r.lookups <= SPF_MAX_LOOKUPS)
		doctor_add(d, LVL_OK, domain, "spf", NULL,
		           "\"%s\": %s %s, Microsoft included, %d look-up%s", r.record,
		           t->egress_ip ? t->egress_ip : "egress_ip",
		           t->egress_ip ? r.result : "unset", r.lookups, r.lookups == 1 ? "" : "s");
}

static void
check_mx(struct doctor *d, const struct tenant *t, const char *domain)
{
	char mx[DNS_RECORDS_MAX][DNS_NAME_MAX], form[300], fix[600], list[1024] = "";
	struct dns_err err;
	size_t n, i;

	if (dns_mx(d->dns, domain, mx, DNS_RECORDS_MAX, &n, &err) < 0) {
		doctor_add(d, LVL_ERR, domain, "mx",
		           err.code == DNS_ETEMP ? "check the resolver in /etc/resolv.conf and "
		                                   "that the domain's name servers answer"
		           : err.code == DNS_EANSWER
		               ? "the domain's name servers send an answer that cannot be read: "
		                 "check the zone with dig"
		               : "the machine is short of memory; run doctor again",
		           "the MX record could not be read: %s", err.msg);
		return;
	}
	mx_endpoint_form(domain, form, sizeof(form));
	snprintf(fix, sizeof(fix),
	         "publish \"%s. MX 0 %s.\" (the value the admin center "
	         "shows for the domain)",
	         domain, form);
	if (n == 0 && dns_nxdomain(d->dns)) {
		doctor_add(d, LVL_ERR, domain, "mx",
		           "check the spelling in accepted_domains, or publish the domain's zone",
		           "%s does not exist in DNS (NXDOMAIN): mail to it has nowhere to go",
		           domain);
		return;
	}
	if (n == 0) {
		doctor_add(d, LVL_ERR, domain, "mx", fix,
		           "no MX record: mail to %s has nowhere to go", domain);
		return;
	}
	for (i = 0; i < n; i++) {
		if ((t->mx_endpoint != NULL && m3_casecmp(mx[i], t->mx_endpoint) == 0) ||
		    m3_casecmp(mx[i], form) == 0) {
			doctor_add(d, LVL_OK, domain, "mx", NULL, "MX %s is %s", mx[i],
			           m3_casecmp(mx[i], form) == 0 &&
			                   (t->mx_endpoint == NULL ||
			                    m3_casecmp(mx[i], t->mx_endpoint) != 0)
			               ? "the domain's Microsoft 365 endpoint"
			               : "the configured mx_endpoint");
			return;
		}
		join(list, sizeof(list), mx[i]);
	}
	doctor_add(d, LVL_ERR, domain, "mx", fix,
	           "MX is %s, not the configured endpoint %s: Direct Send and relay would reach a "
	           "tenant other mail does not",
	           list, t->mx_endpoint ? t->mx_endpoint : form);
}

/* Certificates and credentials --------------------------------------------------------- */

/* may_read - whether the service user can read path (the transport runs as it) */
static bool
may_read(const struct passwd *pw, const char *path, const struct stat *st)
{
	(void)path;
	if (pw == NULL || pw->pw_uid == 0) /* no such user: reported once, above */
		return true;
	if (st->st_uid == pw->pw_uid)
		return (st->st_mode & S_IRUSR) != 0;
	if (st->st_gid == pw->pw_gid)
		return (st->st_mode & S_IRGRP) != 0;
	return (st->st_mode & S_IROTH) != 0;
}

static void
check_file(struct doctor *d, const char *subject, const char *what, const char *path, bool secret)
{
	const struct passwd *pw = getpwnam(d->conf->user);
	struct stat st;
	char fix[600];

	if (stat(path, &st) != 0) {
		snprintf(fix, sizeof(fix), "create %s or correct %s", path, what);
		doctor_add(d, LVL_ERR, subject, "credentials", fix, "%s %s does not exist", what,
		           path);
		return;
	}
	if (secret && (st.st_mode & 077) != 0) {
		snprintf(fix, sizeof(fix), "chmod 600 %s", path);
		doctor_add(d, LVL_ERR, subject, "credentials", fix,
		           "%s %s has mode %04o: group or others can read a secret", what, path,
		           (unsigned)(st.st_mode & 07777));
		return;
	}
	if (!may_read(pw, path, &st)) {
		snprintf(fix, sizeof(fix), "chown %s %s", d->conf->user, path);
		doctor_add(d, LVL_ERR, subject, "credentials", fix,
		           "%s %s cannot be read by the service user %s", what, path,
		           d->conf->user);
		return;
	}
	doctor_add(d, LVL_OK, subject, "credentials", NULL,
	           "%s %s: present, mode %04o, readable by %s", what, path,
	           (unsigned)(st.st_mode & 07777), d->conf->user);
}

static void
check_cert(struct doctor *d, const char *subject, const char *cert, const char *key,
           const struct tenant *t)
{
	/* A connector's certificate is checked against the tenant (names, chain);
	 * an app's only for its key and dates: Entra ID takes self-signed ones. */
	struct cert_report r;
	struct cert_err err;
	char names[1024] = "", fix[600];
	size_t i;

	check_file(d, subject, "certificate_file", cert, false);
	check_file(d, subject, "key_file", key, true);
	if (cert_inspect(cert, key, d->conf->transport.ca_file, t, &r, &err) < 0) {
		doctor_add(d, LVL_ERR, subject, "certificate",
		           err.code == CERT_EREAD
		               ? "check the path and that m365ctl's user may read it"
		               : "give a PEM certificate, leaf first",
		           "%s", err.msg);
		return;
	}
	for (i = 0; i < r.n_names; i++)
		join(names, sizeof(names), r.names[i]);
	if (t != NULL) {
		if (r.matched[0] != '\0')
			doctor_add(
			    d, LVL_OK, subject, "certificate", NULL,
			    "name %s is in an accepted domain (set TlsSenderCertificateName on "
			    "the inbound connector to it or to its *.domain)",
			    r.matched);
		else
			doctor_add(
			    d, LVL_ERR, subject, "certificate",
			    "use a certificate whose CN or SAN is in an accepted domain (e.g. "
			    "relay.<your domain>), the same name as the connector's "
			    "TlsSenderCertificateName",
			    "no name in an accepted domain (names: %s): Microsoft answers 550 "
			    "5.7.64 Relay Access Denied",
			    names[0] ? names : "none");
	}
	if (key != NULL && !r.key_matches)
		doctor_add(
		    d, LVL_ERR, subject, "certificate",
		    "give the key the certificate was issued for (openssl x509 -noout -pubkey "
		    "-in CERT and openssl pkey -pubout -in KEY must print the same)",
		    "%s does not hold the key of %s", key, cert);
	else if (key != NULL)
		doctor_add(d, LVL_OK, subject, "certificate", NULL,
		           "the key matches the certificate");
	if (t == NULL) {
		/* no chain for an app certificate */
	} else if (!r.chain_ok) {
		snprintf(fix, sizeof(fix),
		         "append the intermediate certificates to %s, leaf "
		         "first (Microsoft needs the whole chain, else 5.7.64)",
		         cert);
		doctor_add(d, LVL_ERR, subject, "certificate", fix, "chain incomplete: %s",
		           r.chain_err);
	} else {
		doctor_add(d, LVL_OK, subject, "certificate", NULL,
		           "chain complete to a trusted root");
	}
	if (r.days_left < 0)
		doctor_add(d, LVL_ERR, subject, "certificate", "renew the certificate",
		           "expired on %s: Microsoft refuses it", r.not_after);
	else if (r.days_left < 30)
		doctor_add(d, LVL_WARN, subject, "certificate",
		           "renew the certificate before it expires", "expires in %ld day%s (%s)",
		           r.days_left, r.days_left == 1 ? "" : "s", r.not_after);
	else
		doctor_add(d, LVL_OK, subject, "certificate", NULL, "valid for %ld more days",
		           r.days_left);
}

/* --connect ----------------------------------------------------------------------------- */

static void
check_connect(struct doctor *d, const char *host, unsigned port, bool submission)
{
	const struct conf *c = d->conf;
	struct smtp s;
	struct smtp_reply r;
	struct tls_opts tls;
	char subj[300], names[1024], caps[1024];

	snprintf(subj, sizeof(subj), "%s:%u", host, port);
	memset(&s, 0, sizeof(s));
	memset(&r, 0, sizeof(r));
	net_init(&s.net);
	s.helo = c->transport.helo_name ? c->transport.helo_name : "localhost";
	s.t.connect = s.t.greeting = s.t.command = CONNECT_TIMEOUT;
	memset(&tls, 0, sizeof(tls));
	tls.ca_file = c->transport.ca_file;
	tls.verify = true;
	if (smtp_open(&s, host, port, &r) < 0) {
		if (s.net.code == NET_ERESOLVE)
			doctor_add(d, LVL_ERR, subj, "connect",
			           "check the name in the configuration and the resolver "
			           "(/etc/resolv.conf)",
			           "%s", s.net.err);
		else if (port == 25)
			doctor_add(
			    d, LVL_ERR, subj, "connect",
			    "ask the network or hosting provider to open outbound TCP port 25 "
			    "to *.mail.protection.outlook.com, or send with smtp-auth on port "
			    "587 instead",
			    "cannot reach port 25 (%s): outbound port 25 looks blocked", s.net.err);
		else
			doctor_add(d, LVL_ERR, subj, "connect",
			           "check the firewall and the proxy for outbound TCP to this port",
			           "cannot connect: %s", s.net.err);
		goto out;
	}
	if (r.code != 220) {
		doctor_add(d, LVL_ERR, subj, "connect", NULL, "greeting %d %s", r.code, r.text);
		goto out;
	}
	if (smtp_ehlo(&s, &r) < 0 || r.code != 250) {
		doctor_add(d, LVL_ERR, subj, "connect", NULL, "EHLO refused: %d %s %s", r.code,
		           r.text, s.net.err);
		goto out;
	}
	if (!(s.ext & EXT_STARTTLS)) {
		doctor_add(d, submission ? LVL_ERR : LVL_WARN, subj, "tls",
		           "a Microsoft endpoint always offers STARTTLS: check that no proxy or "
		           "firewall strips it",
		           "no STARTTLS offered");
		goto out;
	}
	if (smtp_starttls(&s, &tls, &r) < 0 || r.code != 220) {
		doctor_add(d, LVL_ERR, subj, "tls",
		           "check the CA store (ca_file) and that nothing intercepts TLS",
		           "STARTTLS failed: %d %s %s", r.code, r.text, s.net.err);
		goto out;
	}
	net_peer_names(&s.net, names, sizeof(names));
	doctor_add(d, LVL_OK, subj, "tls", NULL, "%s, certificate verified (names: %s)",
	           s.net.tls_version, names);
	if (smtp_ehlo(&s, &r) < 0 || r.code != 250) {
		doctor_add(d, LVL_ERR, subj, "connect", NULL, "EHLO after STARTTLS refused: %d %s",
		           r.code, r.text);
		goto out;
	}
	snprintf(caps, sizeof(caps), "%s%s%s%s%s%s", s.ext & EXT_PIPELINING ? " PIPELINING" : "",
	         s.ext & EXT_SIZE ? " SIZE" : "", s.ext & EXT_8BITMIME ? " 8BITMIME" : "",
	         s.ext & EXT_SMTPUTF8 ? " SMTPUTF8" : "",
	         s.ext & EXT_AUTH_LOGIN ? " AUTH-LOGIN" : "",
	         s.ext & EXT_AUTH_XOAUTH2 ? " AUTH-XOAUTH2" : "");
	if (submission && !(s.ext & EXT_AUTH_XOAUTH2))
		doctor_add(d, LVL_ERR, subj, "ehlo",
		           "smtp_host must be Microsoft's submission endpoint (smtp.office365.com)",
		           "no AUTH XOAUTH2 after STARTTLS (offered:%s)", caps);
	else
		doctor_add(d, LVL_OK, subj, "ehlo", NULL, "offered after STARTTLS:%s", caps);
out:
	smtp_quit(&s);
}

/* Output ------------------------------------------------------------------------------- */

static void
print_text(const struct doctor *d)
{
	const char *last = "";
	size_t i;

	for (i = 0; i < d->n; i++) {
		const struct finding *f = &d->f[i];
		if (strcmp(f->subject, last) != 0) {
			printf("%s%s\n", i ? "\n" : "", f->subject);
			last = f->subject;
		}
		printf("  %-7s %-11s %s\n", level_name[f->level], f->check, f->text);
		if (f->level != LVL_OK && f->fix[0] != '\0')
			printf("  %-7s %-11s fix: %s\n", "", "", f->fix);
	}
	printf("\n%zu error%s, %zu warning%s\n", d->n_err, d->n_err == 1 ? "" : "s", d->n_warn,
	       d->n_warn == 1 ? "" : "s");
}

static void
print_json(const struct doctor *d)
{
	json_object *root = json_object_new_object(), *arr = json_object_new_array();
	size_t i;

	for (i = 0; i < d->n; i++) {
		const struct finding *f = &d->f[i];
		json_object *o = json_object_new_object();
		json_object_object_add(o, "subject", json_object_new_string(f->subject));
		json_object_object_add(o, "check", json_object_new_string(f->check));
		json_object_object_add(o, "level", json_object_new_string(level_name[f->level]));
		json_object_object_add(o, "text", json_object_new_string(f->text));
		if (f->fix[0] != '\0')
			json_object_object_add(o, "fix", json_object_new_string(f->fix));
		json_object_array_add(arr, o);
	}
	json_object_object_add(root, "findings", arr);
	json_object_object_add(root, "errors", json_object_new_int64((int64_t)d->n_err));
	json_object_object_add(root, "warnings", json_object_new_int64((int64_t)d->n_warn));
	printf("%s\n", json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY |
	                                                        JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(root);
}

/* runtime_found - a runtime.h finding, as an error of the gateway */
static void
runtime_found(void *arg, const char *what, const char *fix)
{
	doctor_add(arg, LVL_ERR, "gateway", "runtime", fix, "%s", what);
}

/* uses_graph - whether mail may go as mb through Graph */
static bool
uses_graph(const struct conf *c, const struct mailbox_conf *mb)
{
	size_t i;

	if (mb->hve || mb->app == NULL)
		return false;
	if (!mb->smtp_auth)
		return true;
	for (i = 0; i < c->n_domains; i++)
		if (c->domains[i].mode == MODE_GRAPH && c->domains[i].mailbox == mb)
			return true;
	return false;
}

/* check_graph - a Graph token for mb's app, and Graph reading the mailbox */
static void
check_graph(struct doctor *d, const struct mailbox_conf *mb)
{
	const struct tenant *t = mb->tenant;
	struct oauth_token tok;
	struct oauth_err e;
	struct graph_probe r;
	char subj[300];

	snprintf(subj, sizeof(subj), "%s (graph)", mb->name);
	if (oauth_fetch(d->conf, mb->app, t->graph_scope, &tok, &e) < 0) {
		doctor_add(d, LVL_ERR, subj, "token",
		           e.hint ? e.hint : "check the app's credential", "no token for %s: %s",
		           t->graph_scope, e.msg);
		return;
	}
	if (graph_probe(d->conf, t, mb->name, tok.access, &r) < 0)
		doctor_add(d, LVL_ERR, subj, "connect",
		           "check the firewall and the proxy for outbound HTTPS, and the CA store "
		           "(ca_file)",
		           "%s: %s", t->graph_endpoint, r.err);
	else if (r.status != 200)
		doctor_add(d, LVL_ERR, subj, "graph", graph_probe_hint(r.status),
		           "GET /v1.0/users/%s: HTTP %ld %s%s%s", mb->name, r.status, r.code,
		           r.code[0] ? ": " : "", r.message);
	else
		doctor_add(d, LVL_OK, subj, "graph", NULL,
		           "%s over verified TLS took the app's token and reads the mailbox "
		           "(sendMail also needs Mail.Send)",
		           t->graph_endpoint);
	memset(&tok, 0, sizeof(tok));
}

static void
run_checks(struct doctor *d, bool connect)
{
	const struct conf *c = d->conf;
	size_t i, k;

	if (getpwnam(c->user) == NULL)
		doctor_add(d, LVL_WARN, "gateway", "user",
		           "create it: systemd-sysusers (contrib/systemd/m365relay.sysusers), or "
		           "adduser --system --group --home /var/lib/m365relay m365relay",
		           "service user %s does not exist: file access not checked for it",
		           c->user);
	else
		/* state_dir and sendmail (the secrets are checked below, one by one) */
		runtime_check(c, 0, runtime_found, d);
	check_postfix(d);
	for (i = 0; i < c->n_tenants; i++) {
		const struct tenant *t = &c->tenants[i];
		check_endpoints(d, t);
		for (k = 0; k < t->n_accepted; k++) {
			if (t->accepted[k][0] == '*')
				continue; /* subdomains: checked where a domain names them */
			check_spf(d, t, t->accepted[k]);
			check_mx(d, t, t->accepted[k]);
		}
	}
	for (i = 0; i < c->n_connectors; i++) {
		const struct connector *cn = &c->connectors[i];
		char subj[300];
		snprintf(subj, sizeof(subj), "connector %s", cn->name);
		if (cn->kind == CONNECTOR_CERTIFICATE)
			check_cert(d, subj, cn->certificate_file, cn->key_file, cn->tenant);
		else if (cn->tenant->egress_ip == NULL)
			doctor_add(d, LVL_WARN, subj, "connector",
			           "set egress_ip in the tenant to the address the connector lists",
			           "an IP connector, but the tenant's egress_ip is not set");
		else
			doctor_add(d, LVL_OK, subj, "connector", NULL,
			           "IP connector: Microsoft must list %s in SenderIPAddresses",
			           cn->tenant->egress_ip);
	}
	for (i = 0; i < c->n_apps; i++) {
		const struct app *a = &c->apps[i];
		char subj[300];
		snprintf(subj, sizeof(subj), "app %s", a->name);
		if (a->secret_file != NULL)
			check_file(d, subj, "client_secret_file", a->secret_file, true);
		else
			check_cert(d, subj, a->certificate_file, a->key_file, NULL);
	}
	for (i = 0; i < c->n_mailboxes; i++) {
		const struct mailbox_conf *mb = &c->mailboxes[i];
		char subj[300];
		snprintf(subj, sizeof(subj), "mailbox %s", mb->name);
		if (mb->auth == AUTH_BASIC)
			check_file(d, subj, "password_file", mb->password_file, true);
		else
			doctor_add(d, LVL_OK, subj, "credentials", NULL,
			           "OAuth through app %s "
			           "(m365ctl token test %s --mailbox %s tries it)",
			           mb->app->name, mb->app->name, mb->name);
	}
	if (!connect)
		return;
	for (i = 0; i < c->n_tenants; i++) {
		const struct tenant *t = &c->tenants[i];
		bool hve = false;
		check_connect(d, t->smtp_host, t->smtp_port, true);
		if (t->mx_endpoint != NULL)
			check_connect(d, t->mx_endpoint, t->mx_port, false);
		for (k = 0; k < c->n_mailboxes; k++)
			hve |= c->mailboxes[k].tenant == t && c->mailboxes[k].hve;
		if (hve)
			check_connect(d, t->hve_host, t->hve_port, true);
	}
	for (i = 0; i < c->n_mailboxes; i++)
		if (uses_graph(c, &c->mailboxes[i]))
			check_graph(d, &c->mailboxes[i]);
}

int
cmd_doctor(const char *conf_file, int argc, char **argv)
{
	static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
	                                     {"connect", no_argument, NULL, 'C'},
	                                     {NULL, 0, NULL, 0}};
	struct doctor d;
	bool json = false, connect = false;
	struct conf *conf;
	int ch, rc;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (ch == 'j')
			json = true;
		else if (ch == 'C')
			connect = true;
		else
			goto usage;
	}
	if (optind != argc)
		goto usage;
	conf = cli_load(conf_file, 1);
	if (conf == NULL)
		return 1;
	memset(&d, 0, sizeof(d));
	d.conf = conf;
	d.dns = dns_system();
	if (d.dns == NULL) {
		fprintf(stderr, "m365ctl: cannot initialise the resolver (/etc/resolv.conf)\n");
		conf_free(conf);
		return 1;
	}
	run_checks(&d, connect);
	if (d.oom) {
		fprintf(stderr, "m365ctl: out of memory\n");
		rc = 1;
	} else {
		if (json)
			print_json(&d);
		else
			print_text(&d);
		rc = d.n_err ? 1 : 0;
	}
	free(d.f);
	dns_free(d.dns);
	conf_free(conf);
	return rc;
usage:
	fprintf(stderr, "usage: m365ctl [-c FILE] doctor [--json] [--connect]\n");
	return 2;
}
