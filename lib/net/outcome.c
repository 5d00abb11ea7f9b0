/*
 * outcome.c - reply classes, hints, exit codes (see outcome.h).
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "outcome.h"
#include "util/util.h"

/*
 * 5xx replies that mean the gateway's configuration (or the tenant's) is
 * wrong, not the message: they defer, so that mail waits for the fix
 * instead of bouncing.  Each has the hint an administrator needs.
 * Matched on the enhanced code, then (if given) a substring of the text.
 */
static const struct known {
	const char *xcode;
	const char *text;
	enum reply_class cls;
	const char *hint;
} known[] = {
    {"5.7.139", "SmtpClientAuthentication is disabled", RC_CONFIG,
     "SMTP AUTH is disabled for the tenant or the mailbox: Set-CASMailbox "
     "-Identity <mailbox> -SmtpClientAuthenticationDisabled $false "
     "(https://aka.ms/smtp_auth_disabled)"},
    {"5.7.139", "basic authentication is disabled", RC_CONFIG,
     "Basic authentication is blocked (security defaults or an "
     "authentication policy): give the mailbox an app (OAuth)"},
    {"5.7.139", "credentials were incorrect", RC_CONFIG,
     "the password in the mailbox's password_file is wrong"},
    {"5.7.139", NULL, RC_CONFIG,
     "authentication refused by policy (Conditional Access, federation): "
     "see the text and the sign-in logs"},
    {"5.7.30", NULL, RC_CONFIG,
     "Microsoft no longer accepts Basic authentication for SMTP AUTH: "
     "give the mailbox an app (OAuth)"},
    {"5.7.3", "STARTTLS", RC_CONFIG,
     "the server wants STARTTLS first (a gateway bug: please report it)"},
    {"5.7.3", NULL, RC_CONFIG,
     "the token was refused: grant the app SMTP.SendAsApp with admin "
     "consent, register it (New-ServicePrincipal) and give it access to the "
     "mailbox (Add-MailboxPermission -AccessRights FullAccess)"},
    {"5.5.124", NULL, RC_CONFIG,
     "the High Volume Email endpoint does not know the account the token was "
     "sent for: the mailbox must be an HVE account (New-MailUser -HVEAccount) "
     "and the app allowed on it (Add-HVEAppAccess, up to 5 minutes to apply)"},
    {"5.7.57", NULL, RC_CONFIG,
     "the server saw no authentication (a gateway bug: please report it)"},
    {"5.7.4", NULL, RC_CONFIG,
     "the endpoint does not offer this authentication: SMTP AUTH needs "
     "smtp.office365.com (smtp_host), not the MX endpoint"},
    {"5.7.60", NULL, RC_CONFIG,
     "the mailbox may not send as this address: Add-RecipientPermission "
     "-Identity <address> -Trustee <mailbox> -AccessRights SendAs, and list "
     "it in the mailbox's send_as"},
    {"5.2.252", "SendAsDenied", RC_CONFIG,
     "the mailbox may not send as this address: Add-RecipientPermission "
     "-Identity <address> -Trustee <mailbox> -AccessRights SendAs, and list "
     "it in the mailbox's send_as"},
    {"5.2.251", NULL, RC_CONFIG,
     "Microsoft throttles the mailbox after repeated errors (mailbox full); "
     "mail waits until it lifts"},
    {"5.2.252", NULL, RC_CONFIG,
     "Microsoft throttles the mailbox after repeated Send As errors; fix the "
     "Send As permissions, mail waits until it lifts"},
    {"5.2.253", NULL, RC_CONFIG, "Microsoft throttles the mailbox after repeated licence errors"},
    {"5.2.254", NULL, RC_CONFIG,
     "Microsoft throttles the mailbox after repeated too-many-recipients errors"},
    {"5.2.255", NULL, RC_CONFIG,
     "Microsoft throttles the mailbox after repeated invalid-recipient errors"},
    {"5.2.0", "SubmissionQuotaExceeded", RC_CONFIG,
     "the mailbox reached 10,000 recipients in 24 hours: lower its "
     "recipients limit or spread the load over more mailboxes"},
    {"5.2.2", "QuotaExceeded", RC_CONFIG,
     "the mailbox is full (Sent Items counts): free space or raise its quota"},
    {"5.7.64", NULL, RC_CONFIG,
     "no inbound connector matched: check that the connector's certificate "
     "name (TlsSenderCertificateName) or IP matches, and that the sender is "
     "in an accepted domain"},
    {"5.7.68", NULL, RC_CONFIG,
     "the tenant rejects Direct Send (RejectDirectSend): set direct_send = "
     "false for the tenant and give the domain a connector or a mailbox"},
    {"5.7.51", NULL, RC_CONFIG,
     "a partner connector restricts this domain to its certificate or IPs"},
    {"5.7.54", NULL, RC_CONFIG,
     "Microsoft would not relay to this recipient: Direct Send reaches only "
     "the organisation's mailboxes; use a connector or SMTP AUTH"},
    {"5.1.8", NULL, RC_CONFIG,
     "the mailbox is on the Restricted users list (bad outbound sender): an "
     "administrator must release it"},
    {"5.7.705", NULL, RC_CONFIG, "the tenant is blocked for exceeding a threshold"},
    {"5.7.708", NULL, RC_CONFIG, "Microsoft does not accept traffic from this IP"},
    {"5.7.750", NULL, RC_CONFIG, "the tenant is blocked from sending from unregistered domains"},
    {"4.3.2", NULL, RC_TEMP,
     "more than 3 concurrent SMTP AUTH sessions for the mailbox: keep "
     "sessions <= 3 and the transport's process limit in step"},
    {"4.7.66", NULL, RC_TEMP, "TLS 1.2 or later is required"},
    {"4.7.500", NULL, RC_TEMP, "Microsoft is throttling this sender or IP"},
};

static const struct known *
lookup(const struct smtp_reply *r)
{
	size_t i;

	for (i = 0; i < NELEM(known); i++) {
		if (strcmp(known[i].xcode, r->xcode) != 0)
			continue;
		if (known[i].text != NULL && strstr(r->text, known[i].text) == NULL)
			continue;
		return &known[i];
	}
	return NULL;
}

enum reply_class
reply_classify(const struct smtp_reply *r)
{
	const struct known *k;

	if (r->code / 100 == 2)
		return RC_OK;
	/* A 1xx or 3xx cannot end a command that delivers: never "sent". */
	if (r->code / 100 != 5)
		return RC_TEMP;
	k = lookup(r);
	return k != NULL ? k->cls : RC_PERM;
}

const char *
reply_hint(const struct smtp_reply *r)
{
	const struct known *k = lookup(r);
	return k ? k->hint : NULL;
}

void
outcome_reply(struct outcome *o, const char *host, const struct smtp_reply *r)
{
	enum reply_class c = reply_classify(r);
	char status[16];

	/* The status: Microsoft's enhanced code, its class made ours. */
	if (r->xcode[0] != '\0')
		m3_strlcpy(status, r->xcode, sizeof(status));
	else
		snprintf(status, sizeof(status), "%d.0.0", r->code / 100);
	o->kind = c == RC_OK ? OUT_SENT : c == RC_PERM ? OUT_BOUNCE : OUT_DEFER;
	if (o->kind == OUT_DEFER)
		status[0] = '4';
	else if (o->kind == OUT_BOUNCE)
		status[0] = '5';
	snprintf(o->line, sizeof(o->line), "%s %s said: %d %s", status, host, r->code, r->text);
}

void
outcome_local(struct outcome *o, enum outcome_kind kind, const char *status, const char *fmt, ...)
{
	va_list ap;
	int n;

	o->kind = kind;
	n = snprintf(o->line, sizeof(o->line), "%s ", status);
	va_start(ap, fmt);
	if (n > 0 && (size_t)n < sizeof(o->line))
		vsnprintf(o->line + n, sizeof(o->line) - (size_t)n, fmt, ap);
	va_end(ap);
}
