/*
 * cmd_token.c - m365ctl token test APP [--mailbox ADDR | --graph ADDR]:
 * get a token from the endpoint (not the cache), show what Microsoft put
 * in it (audience, roles, expiry; never the token itself), and with
 * --mailbox try an SMTP AUTH XOAUTH2 round trip as that mailbox; with
 * --graph get a token for the tenant's Graph scope instead and read the
 * mailbox with it (GET /v1.0/users/ADDR: sends nothing).
 */
#include "config.h"

#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "net/curl_dl.h"
#include "cli.h"
#include "graph_probe.h"
#include "net/oauth.h"
#include "net/outcome.h"
#include "net/smtp.h"

static void
show_claims(const char *token, const char *role)
{
	char json[8192];
	json_object *j, *v;
	const char *keys[] = {"aud", "roles", "appid", "tid", "iss"};
	size_t i;

	if (oauth_claims(token, json, sizeof(json)) < 0 || (j = json_tokener_parse(json)) == NULL) {
		printf("claims:      (not a JWT: cannot show them)\n");
		return;
	}
	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (json_object_object_get_ex(j, keys[i], &v))
			printf("%-12s %s\n", keys[i],
			       json_object_to_json_string_ext(
			           v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	if (json_object_object_get_ex(j, "exp", &v)) {
		time_t exp = (time_t)json_object_get_int64(v);
		struct tm tm;
		char buf[64];
		gmtime_r(&exp, &tm);
		strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
		printf("%-12s %s (in %lds)\n", "expires", buf, (long)(exp - time(NULL)));
	}
	if (!json_object_object_get_ex(j, "roles", &v) ||
	    strstr(json_object_get_string(v), role) == NULL)
		printf("warning:     no %s role: grant it to the app and give admin consent\n",
		       role);
	json_object_put(j);
}

static int
smtp_round_trip(const struct conf *conf, const struct app *app, const char *mailbox,
                const char *token)
{
	const struct tenant *t = app->tenant;
	struct smtp s;
	struct smtp_reply r;
	struct tls_opts tls;
	int rc = 1;

	memset(&s, 0, sizeof(s));
	net_init(&s.net);
	s.helo = conf->transport.helo_name ? conf->transport.helo_name : "localhost";
	s.t.connect = conf->transport.timeout_connect;
	s.t.greeting = s.t.command = 30;
	memset(&tls, 0, sizeof(tls));
	tls.ca_file = conf->transport.ca_file;
	tls.verify = true;
	printf("smtp:        %s port %u\n", t->smtp_host, t->smtp_port);
	if (smtp_open(&s, t->smtp_host, t->smtp_port, &r) < 0 || r.code != 220 ||
	    smtp_ehlo(&s, &r) < 0 || r.code != 250 || smtp_starttls(&s, &tls, &r) < 0 ||
	    r.code != 220 || smtp_ehlo(&s, &r) < 0 || r.code != 250) {
		printf("smtp:        failed before AUTH: %s%s%d %s\n", s.net.err,
		       s.net.err[0] ? "; " : "", r.code, r.text);
		goto out;
	}
	printf("tls:         %s\n", s.net.tls_version);
	if (smtp_auth_xoauth2(&s, mailbox, token, &r) < 0) {
		printf("auth:        failed: %s\n", s.net.err);
		goto out;
	}
	printf("auth:        %d %s\n", r.code, r.text);
	if (r.code == 235) {
		printf("result:      OK, %s can submit with this app\n", mailbox);
		rc = 0;
	} else if (reply_hint(&r) != NULL) {
		printf("hint:        %s\n", reply_hint(&r));
	}
out:
	smtp_quit(&s);
	return rc;
}

/* graph_round_trip - GET /v1.0/users/{mailbox} with the Graph token, said */
static int
graph_round_trip(const struct conf *conf, const struct app *app, const char *mailbox,
                 const char *token)
{
	struct graph_probe r;

	printf("graph:       GET %s/v1.0/users/%s\n", app->tenant->graph_endpoint, mailbox);
	if (graph_probe(conf, app->tenant, mailbox, token, &r) < 0) {
		printf("graph:       failed: %s\n", r.err);
		return 1;
	}
	printf("status:      HTTP %ld\n", r.status);
	if (r.status == 200) {
		printf("result:      OK, the app can use Graph as %s (sendMail needs the "
		       "application permission Mail.Send)\n",
		       mailbox);
		return 0;
	}
	if (r.code[0] != '\0')
		printf("error:       %s: %s\n", r.code, r.message);
	printf("hint:        %s\n", graph_probe_hint(r.status));
	return 1;
}

int
cmd_token(const char *conf_file, int argc, char **argv)
{
	static const struct option opts[] = {{"mailbox", required_argument, NULL, 'm'},
	                                     {"graph", required_argument, NULL, 'g'},
	                                     {NULL, 0, NULL, 0}};
	const char *mailbox = NULL, *graph = NULL, *name, *scope;
	const struct app *app = NULL;
	struct oauth_token tok;
	struct oauth_err e;
	struct conf *conf;
	char url[1024];
	size_t i;
	int c, rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'm')
			mailbox = optarg;
		else if (c == 'g')
			graph = optarg;
		else
			goto usage;
	}
	if (mailbox != NULL && graph != NULL)
		goto usage;
	if (argc - optind != 2 || strcmp(argv[optind], "test") != 0)
		goto usage;
	name = argv[optind + 1];
	conf = cli_load(conf_file, 1);
	if (conf == NULL)
		return 1;
	for (i = 0; i < conf->n_apps; i++)
		if (strcmp(conf->apps[i].name, name) == 0)
			app = &conf->apps[i];
	if (app == NULL) {
		fprintf(stderr, "m365ctl: no app \"%s\" in %s\n", name, conf_file);
		conf_free(conf);
		return 1;
	}
	oauth_token_url(app, url, sizeof(url));
	printf("app:         %s (client %s, %s)\n", app->name, app->client_id,
	       app->secret_file                    ? "client secret"
	       : app->assertion == ASSERTION_PS256 ? "certificate, PS256"
	                                           : "certificate, RS256");
	printf("endpoint:    %s\n", url);
	if (graph != NULL && app->tenant->graph_endpoint == NULL) {
		fprintf(stderr,
		        "m365ctl: tenant %s has no graph_endpoint (its authority is not a "
		        "known cloud): give one\n",
		        app->tenant->name);
		conf_free(conf);
		return 1;
	}
	scope = graph != NULL ? app->tenant->graph_scope : app->tenant->scope;
	printf("scope:       %s\n", scope);
	if (oauth_fetch(conf, app, scope, &tok, &e) < 0) {
		printf("token:       FAILED: %s\n", e.msg);
		if (e.hint != NULL)
			printf("hint:        %s\n", e.hint);
		conf_free(conf);
		return 1;
	}
	printf("token:       obtained (not shown)\n");
	show_claims(tok.access, graph != NULL ? "Mail.Send" : "SMTP.SendAsApp");
	rc = mailbox ? smtp_round_trip(conf, app, mailbox, tok.access)
	     : graph ? graph_round_trip(conf, app, graph, tok.access)
	             : 0;
	memset(&tok, 0, sizeof(tok));
	conf_free(conf);
	return rc;
usage:
	fprintf(stderr,
	        "usage: m365ctl [-c FILE] token test APP [--mailbox ADDRESS | --graph ADDRESS]\n");
	return 2;
}
