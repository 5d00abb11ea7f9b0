/*
 * cmd_explain.c - m365ctl explain: run the policy engine on a submission
 * described on the command line and say, in words, what the gateway would
 * do with it.  Nothing is sent.  The administrator's "what if".
 */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "policy/policy.h"
#include "net/spfgate.h"

#define MAX_ITEMS 64

static void
explain_usage(void)
{
	fprintf(stderr, "usage: m365ctl [-c FILE] explain [--client IP] [--login NAME] "
	                "[--cert-subject DN]\n"
	                "         --sender ADDR --rcpt ADDR [--rcpt ADDR...] "
	                "[--from VALUE] [--sender-header VALUE] [--reply-to]\n");
}

/* gate_print - a require_spf_pass finding, before the verdict it shapes */
static void
gate_print(void *arg, enum spfgate_level lvl, const char *line)
{
	(void)arg;
	(void)lvl;
	printf("spf:         %s\n", line + strlen("require_spf_pass: "));
}

/* What the command line describes: a submission, and the storage it points into. */
struct explain_in {
	const char *rcpts[MAX_ITEMS], *from[MAX_ITEMS], *sender[MAX_ITEMS];
	struct ipaddr client;
	struct submission sub;
};

/* explain_args - the submission from argv; 0, or 2 (usage, said) */
static int
explain_args(int argc, char **argv, struct explain_in *in)
{
	static const struct option opts[] = {{"client", required_argument, NULL, 'a'},
	                                     {"login", required_argument, NULL, 'l'},
	                                     {"cert-subject", required_argument, NULL, 'C'},
	                                     {"sender", required_argument, NULL, 's'},
	                                     {"rcpt", required_argument, NULL, 'r'},
	                                     {"from", required_argument, NULL, 'f'},
	                                     {"sender-header", required_argument, NULL, 'S'},
	                                     {"reply-to", no_argument, NULL, 'R'},
	                                     {NULL, 0, NULL, 0}};
	struct submission *sub = &in->sub;
	int c;

	memset(in, 0, sizeof(*in));
	sub->rcpts = in->rcpts;
	sub->headers.from = in->from;
	sub->headers.sender = in->sender;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'a':
			if (ip_parse(optarg, &in->client) < 0) {
				fprintf(stderr, "m365ctl: --client %s: not an IP address\n",
				        optarg);
				return 2;
			}
			sub->id.client = &in->client;
			break;
		case 'l':
			sub->id.sasl_login = optarg;
			break;
		case 'C':
			sub->id.cert_subject = optarg;
			break;
		case 's':
			sub->env_sender = optarg;
			break;
		case 'r':
			if (sub->n_rcpts < MAX_ITEMS)
				in->rcpts[sub->n_rcpts++] = optarg;
			break;
		case 'f':
			if (sub->headers.n_from < MAX_ITEMS)
				in->from[sub->headers.n_from++] = optarg;
			break;
		case 'S':
			if (sub->headers.n_sender < MAX_ITEMS)
				in->sender[sub->headers.n_sender++] = optarg;
			break;
		case 'R':
			sub->headers.n_reply_to = 1;
			break;
		default:
			explain_usage();
			return 2;
		}
	}
	if (optind != argc || sub->env_sender == NULL || sub->n_rcpts == 0) {
		explain_usage();
		return 2;
	}
	return 0;
}

/* explain_print - what the policy decided, line by line */
static void
explain_print(const struct explain_in *in, const struct policy_msg *m,
              const struct rcpt_verdict *rv)
{
	char buf[2048], a[ADDR_TEXT_MAX + 1], b2[ADDR_TEXT_MAX + 1];
	size_t i;

	printf("submitter:   %s\n",
	       m->submitter ? m->submitter->name : "(none: client not recognised)");
	if (m->submitter != NULL) {
		addr_format(&m->env_sender, a, sizeof(a));
		addr_format(&m->final_sender, b2, sizeof(b2));
		printf("domain:      %s (tenant %s)\n", m->domain->name, m->tenant->name);
		printf("sender:      <%s>%s%s%s\n", m->sender_unparseable ? "(unparseable)" : a,
		       m->sender_rewritten ? " rewritten to <" : " kept",
		       m->sender_rewritten ? b2 : "", m->sender_rewritten ? ">" : "");
		for (i = 0; i < in->sub.n_rcpts && i < MAX_ITEMS; i++)
			printf("recipient:   %s %s%s\n", in->rcpts[i],
			       rv[i].reply.verdict == VERDICT_ACCEPT
			           ? (rv[i].internal ? "internal" : "external")
			           : "refused: ",
			       rv[i].reply.verdict == VERDICT_ACCEPT
			           ? ""
			           : reply_format(&rv[i].reply, buf, sizeof(buf)));
		if (m->from_action != FROM_KEEP)
			printf("header From: %s to %s\n",
			       m->from_action == FROM_ADD ? "added" : "rewritten", m->new_from);
		if (m->new_reply_to[0] != '\0')
			printf("Reply-To:    added %s\n", m->new_reply_to);
		if (m->delete_sender)
			printf("Sender:      removed\n");
		if (m->reply.verdict == VERDICT_ACCEPT)
			printf("delivery:    %s%s%s%s%s\n", mode_name(m->mode),
			       m->mailbox ? " as mailbox " : "", m->mailbox ? m->mailbox->name : "",
			       m->connector ? " through connector " : "",
			       m->connector ? m->connector->name : "");
		if (m->reply.verdict == VERDICT_ACCEPT && m->mode == MODE_HVE)
			printf(
			    "             (an HVE account: High Volume Email, internal recipients "
			    "only)\n");
		else if (m->reply.verdict == VERDICT_ACCEPT && m->mode == MODE_GRAPH)
			printf("             (Microsoft Graph sendMail: %s)\n",
			       m->domain->mode == MODE_GRAPH ? "the domain is pinned to graph"
			                                     : "the mailbox has smtp_auth = no");
	}
	printf("verdict:     %s\n", reply_format(&m->reply, buf, sizeof(buf)));
	printf("log:         %s\n", policy_summary(m, buf, sizeof(buf)));
}

int
cmd_explain(const char *conf_file, int argc, char **argv)
{
	struct explain_in in;
	struct rcpt_verdict rv[MAX_ITEMS];
	struct policy_facts facts = {NULL};
	bool *unauth = NULL;
	struct policy_msg m;
	struct conf *conf;
	int rc;

	if ((rc = explain_args(argc, argv, &in)) != 0)
		return rc;
	conf = cli_load(conf_file, 1);
	if (conf == NULL)
		return 1;
	/* require_spf_pass is looked up as the milter would (it holds back
	 * direct-send and relay for a domain whose SPF fails), and said. */
	if (conf->milter.require_spf_pass && conf->n_domains > 0) {
		unauth = calloc(conf->n_domains, sizeof(bool));
		if (unauth == NULL) {
			conf_free(conf);
			return 1;
		}
		spfgate_check(conf, unauth, gate_print, NULL);
		facts.spf_unauthorized = unauth;
	}
	policy_evaluate(conf, &facts, &in.sub, &m, rv, MAX_ITEMS);
	free(unauth);
	explain_print(&in, &m, rv);
	conf_free(conf);
	return m.reply.verdict == VERDICT_ACCEPT ? 0 : 1;
}
