/*
 * conf_sections.c - one builder per section of the configuration: the
 * global options and the route keys, milter, store, transport, tenant,
 * app, connector, mailbox, domain, submitter.  Each applies the defaults
 * (conf_build.h), types every option through conf_get.c and checks the
 * rules that concern the section alone; conf.c checks across sections.
 */
#include "config.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf_build.h"
#include "routekey.h"
#include "util/util.h"

/*
 * load_route_keys - the keys of route_key_file (routekey.h).  Without the
 * option, "route.key" next to the main file is used when it exists; when
 * it does not, routes go unsigned (a warning: nothing is refused, the
 * transport then decides every message again).  The milter reads the file
 * again at each reload, as the service user, so the file must be that
 * user's (a root-owned 0600 key would work at start and fail the reload).
 */
void
load_route_keys(struct build *b, const struct sec *root, struct conf *c)
{
	struct conf_loc loc = {b->main_file, 0};
	struct routekey_err rk;
	struct stat st;
	bool given;

	c->route_key_file = get_path(b, root, "route_key_file", &loc);
	given = c->route_key_file != NULL;
	if (!given) {
		char *p;
		if (asprintf(&p, "%s/%s", c->dir, DEF_ROUTE_KEY_FILE) < 0)
			return;
		c->route_key_file = arena_strdup(c->arena, p);
		free(p);
		if (c->route_key_file == NULL)
			return;
		if (b->flags & (CONF_NO_ROUTE_KEYS | CONF_NO_FILES))
			return;
		if (lstat(c->route_key_file, &st) < 0 && errno == ENOENT) {
			bwarn(b, loc,
			      "no route key (%s): the milter's routes are not "
			      "signed and the transport decides every message again; "
			      "run: m365ctl route-key",
			      c->route_key_file);
			c->route_key_file = NULL;
			return;
		}
	}
	if (b->flags & (CONF_NO_ROUTE_KEYS | CONF_NO_FILES))
		return;
	check_file(b, loc, "route_key_file", c->route_key_file, true);
	if ((b->flags & CONF_SNAPSHOT) && stat(c->route_key_file, &st) < 0)
		c->sources_unsure = true;
	if (route_keys_read(c->route_key_file, c->arena, &c->route_keys, &c->n_route_keys, &rk) <
	    0) {
		berr(b, loc, "route_key_file: %s", rk.msg);
		return;
	}
	if (b->flags & CONF_SNAPSHOT)
		conf_source_file(c, c->route_key_file, &st);
	if (geteuid() == 0 && stat(c->route_key_file, &st) == 0) {
		const struct passwd *pw = getpwnam(c->user);
		if (pw != NULL && st.st_uid != pw->pw_uid)
			berr(b, loc,
			     "route_key_file: %s: owned by uid %u, but the milter "
			     "(after a reload) and the transport read it as %s; run: "
			     "chown %s %s",
			     c->route_key_file, (unsigned)st.st_uid, c->user, c->user,
			     c->route_key_file);
	}
}

/* Names and enumerations ---------------------------------------------------- */

static const struct enum_name mode_names[] = {{"auto", MODE_AUTO},
                                              {"smtp-auth", MODE_SMTP_AUTH},
                                              {"direct-send", MODE_DIRECT_SEND},
                                              {"relay", MODE_RELAY},
                                              {"graph", MODE_GRAPH},
                                              {"hve", MODE_HVE},
                                              {NULL, 0}};

static const struct enum_name auth_names[] = {
    {"oauth", AUTH_OAUTH}, {"basic", AUTH_BASIC}, {NULL, 0}};

static const struct enum_name alg_names[] = {
    {"ps256", ASSERTION_PS256}, {"rs256", ASSERTION_RS256}, {NULL, 0}};

static const struct enum_name connector_names[] = {
    {"certificate", CONNECTOR_CERTIFICATE}, {"ip", CONNECTOR_IP}, {NULL, 0}};

static const struct enum_name backend_names[] = {
    {"lmdb", STORE_BACKEND_LMDB}, {"redis", STORE_BACKEND_REDIS}, {NULL, 0}};

static const struct enum_name unverified_names[] = {
    {"decide", UNVERIFIED_DECIDE}, {"defer", UNVERIFIED_DEFER}, {NULL, 0}};

static const struct enum_name tls_names[] = {
    {"required", TLS_REQUIRED}, {"opportunistic", TLS_OPPORTUNISTIC}, {NULL, 0}};

static const struct enum_name fail_names[] = {
    {"tempfail", FAIL_TEMPFAIL}, {"accept", FAIL_ACCEPT}, {"reject", FAIL_REJECT}, {NULL, 0}};

int
mode_parse(const char *s, size_t n, enum mode *mode)
{
	size_t i;

	for (i = 0; mode_names[i].name != NULL; i++)
		if (strlen(mode_names[i].name) == n && memcmp(mode_names[i].name, s, n) == 0) {
			*mode = (enum mode)mode_names[i].value;
			return 0;
		}
	return -1;
}

bool
mode_has_mailbox(enum mode mode)
{
	return mode == MODE_SMTP_AUTH || mode == MODE_GRAPH || mode == MODE_HVE;
}

const char *
mode_name(enum mode mode)
{
	size_t i;

	for (i = 0; mode_names[i].name != NULL; i++)
		if (mode_names[i].value == (int)mode)
			return mode_names[i].name;
	return "unknown";
}

/* Sections ---------------------------------------------------------------------- */

void
build_globals(struct build *b, const struct sec *root)
{
	struct conf *c = b->conf;
	struct sec sub = {cfg_size(root->cfg, "milter") ? cfg_getsec(root->cfg, "milter") : NULL,
	                  NULL};
	const struct sec *m = sub.cfg != NULL ? &sub : NULL;
	unsigned long timeout = DEF_MILTER_TIMEOUT;
	int v = FAIL_TEMPFAIL;
	const struct locstr *ls;

	c->user = get_str(b, root, "user", DEF_USER);
	c->state_dir = get_str(b, root, "state_dir", DEF_STATE_DIR);
	c->log_file = get_path(b, root, "log_file", NULL);
	load_route_keys(b, root, c);
	/* Every string in the arena, defaults too: a snapshot holds no
	 * pointer out of it (conf_snap.c). */
	c->milter.socket = arena_strdup(c->arena, DEF_MILTER_SOCKET);
	c->milter.pid_file = arena_strdup(c->arena, DEF_PID_FILE);
	c->milter.on_error = FAIL_TEMPFAIL;
	c->milter.messages_action = FAIL_ACCEPT;
	c->milter.recipients_action = FAIL_ACCEPT;
	c->milter.timeout = DEF_MILTER_TIMEOUT;
	c->milter.max_recipients = DEF_MAX_RECIPIENTS;
	if (m == NULL)
		return;
	c->milter.socket = get_str(b, m, "socket", DEF_MILTER_SOCKET);
	ls = get(m, "socket");
	if (ls != NULL && strncmp(ls->s, "unix:", 5) != 0 && strncmp(ls->s, "local:", 6) != 0 &&
	    strncmp(ls->s, "inet:", 5) != 0 && strncmp(ls->s, "inet6:", 6) != 0)
		berr(b, vloc(b, ls), "socket: \"%s\" must be unix:/path or inet:port@host", ls->s);
	/* Absent: the default; "": none (inet: sockets only want that). */
	c->milter.pid_file = get_path(b, m, "pid_file", NULL);
	if (c->milter.pid_file == NULL)
		c->milter.pid_file = arena_strdup(c->arena, DEF_PID_FILE);
	else if (c->milter.pid_file[0] == '\0')
		c->milter.pid_file = NULL;
	get_enum(b, m, "on_error", fail_names, FAIL_TEMPFAIL, &v);
	c->milter.on_error = (enum fail_action)v;
	v = FAIL_ACCEPT;
	get_enum(b, m, "messages_action", fail_names, FAIL_ACCEPT, &v);
	c->milter.messages_action = (enum fail_action)v;
	v = FAIL_ACCEPT;
	get_enum(b, m, "recipients_action", fail_names, FAIL_ACCEPT, &v);
	c->milter.recipients_action = (enum fail_action)v;
	ls = get(m, "metrics_listen");
	if (ls != NULL) {
		const char *colon = strrchr(ls->s, ':');
		char *end;
		unsigned long port = colon ? strtoul(colon + 1, &end, 10) : 0;
		if (colon == NULL || colon == ls->s || port == 0 || port > 65535 || *end != '\0')
			berr(b, vloc(b, ls),
			     "metrics_listen: \"%s\" must be ADDRESS:PORT "
			     "(e.g. 127.0.0.1:9365)",
			     ls->s);
		else
			c->milter.metrics_listen = arena_strdup(b->conf->arena, ls->s);
	}
	get_uint(b, m, "timeout", DEF_MILTER_TIMEOUT, 1, 3600, &timeout);
	c->milter.timeout = (int)timeout;
	get_uint(b, m, "max_recipients", DEF_MAX_RECIPIENTS, 1, 1000000, &timeout);
	c->milter.max_recipients = (unsigned)timeout;
	get_bool(b, m, "require_spf_pass", false, &c->milter.require_spf_pass);
}

void
build_store(struct build *b, const struct sec *root)
{
	struct store_conf *st = &b->conf->store;
	struct sec sub = {cfg_size(root->cfg, "store") ? cfg_getsec(root->cfg, "store") : NULL,
	                  NULL};
	const struct sec *sec = sub.cfg != NULL ? &sub : NULL;
	struct conf_loc floc;
	unsigned long v;
	int e = STORE_BACKEND_LMDB;
	char *p;

	st->size_mb = DEF_STORE_MB;
	st->redis_port = DEF_REDIS_PORT;
	st->prefix = arena_strdup(b->conf->arena, DEF_REDIS_PREFIX);
	st->on_error = FAIL_TEMPFAIL;
	if (asprintf(&p, "%s/store.mdb", b->conf->state_dir) >= 0) {
		st->path = arena_strdup(b->conf->arena, p);
		free(p);
	}
	if (asprintf(&p, "%s/journal.mdb", b->conf->state_dir) >= 0) {
		st->journal_path = arena_strdup(b->conf->arena, p);
		free(p);
	}
	if (sec == NULL)
		return;
	get_enum(b, sec, "backend", backend_names, STORE_BACKEND_LMDB, &e);
	st->backend = (enum store_backend_kind)e;
	if (get(sec, "path") != NULL) {
		/* the journal goes beside the counters unless told otherwise */
		const char *slash;
		st->path = get_path(b, sec, "path", NULL);
		slash = st->path != NULL ? strrchr(st->path, '/') : NULL;
		if (slash != NULL &&
		    asprintf(&p, "%.*s/journal.mdb", (int)(slash - st->path), st->path) >= 0) {
			st->journal_path = arena_strdup(b->conf->arena, p);
			free(p);
		}
	}
	if (get(sec, "journal_path") != NULL)
		st->journal_path = get_path(b, sec, "journal_path", NULL);
	if (st->path != NULL && st->journal_path != NULL && strcmp(st->path, st->journal_path) == 0)
		berr(b, sec_loc(b, sec), "store: path and journal_path name the same file, %s",
		     st->path);
	get_uint(b, sec, "size", st->size_mb, 1, 65536, &v);
	st->size_mb = v;
	st->redis_host = get_str(b, sec, "redis_host", DEF_REDIS_HOST);
	get_uint(b, sec, "redis_port", st->redis_port, 1, 65535, &v);
	st->redis_port = (unsigned)v;
	get_uint(b, sec, "redis_db", 0, 0, 1024, &v);
	st->redis_db = (unsigned)v;
	st->redis_password_file = get_path(b, sec, "redis_password_file", &floc);
	if (st->redis_password_file != NULL)
		check_file(b, floc, "redis_password_file", st->redis_password_file, true);
	st->prefix = get_str(b, sec, "prefix", st->prefix);
	e = FAIL_TEMPFAIL;
	get_enum(b, sec, "on_error", fail_names, FAIL_TEMPFAIL, &e);
	st->on_error = (enum fail_action)e;
}

/* A timeout in seconds: 1 s to an hour. */
static int
get_timeout(struct build *b, const struct sec *sec, const char *name, int def)
{
	unsigned long v;

	get_uint(b, sec, name, (unsigned long)def, 1, 3600, &v);
	return (int)v;
}

/* After the submitters: local_submitter refers to one. */
void
build_transport(struct build *b, const struct sec *root)
{
	struct transport_conf *t = &b->conf->transport;
	struct sec sub = {
	    cfg_size(root->cfg, "transport") ? cfg_getsec(root->cfg, "transport") : NULL, NULL};
	const struct sec *sec = sub.cfg != NULL ? &sub : NULL;
	const struct locstr *ls;
	struct conf_loc floc;
	unsigned long v;
	int e = TLS_REQUIRED;

	t->max_size = DEF_MAX_SIZE;
	t->graph_max_size = DEF_GRAPH_MAX_SIZE;
	t->timeout_connect = DEF_TIMEOUT_CONNECT;
	t->timeout_greeting = DEF_TIMEOUT_GREETING;
	t->timeout_command = DEF_TIMEOUT_COMMAND;
	t->timeout_data = DEF_TIMEOUT_DATA;
	t->timeout_block = DEF_TIMEOUT_BLOCK;
	t->timeout_dot = DEF_TIMEOUT_DOT;
	t->pacing_wait = DEF_PACING_WAIT;
	t->session_idle = DEF_SESSION_IDLE;
	t->session_reuse_limit = DEF_SESSION_REUSE;
	t->sendmail = arena_strdup(b->conf->arena, DEF_SENDMAIL);
	t->token_margin = DEF_TOKEN_MARGIN;
	t->token_timeout = DEF_TOKEN_TIMEOUT;
	if (sec == NULL)
		return;
	t->helo_name = get_str(b, sec, "helo_name", NULL);
	ls = get(sec, "helo_name");
	if (ls != NULL) {
		struct addr_err ae;
		if (addr_parse_domain(ls->s, strlen(ls->s), &ae) < 0)
			berr(b, vloc(b, ls), "helo_name: \"%s\" is not a host name: %s", ls->s,
			     ae.msg);
	}
	t->ca_file = get_path(b, sec, "ca_file", &floc);
	if (t->ca_file != NULL)
		check_file(b, floc, "ca_file", t->ca_file, false);
	get_uint(b, sec, "max_size", t->max_size, 1024, 157286400, &v);
	t->max_size = v;
	get_uint(b, sec, "graph_max_size", t->graph_max_size, 1024, 157286400, &v);
	t->graph_max_size = v;
	t->timeout_connect = get_timeout(b, sec, "timeout_connect", t->timeout_connect);
	t->timeout_greeting = get_timeout(b, sec, "timeout_greeting", t->timeout_greeting);
	t->timeout_command = get_timeout(b, sec, "timeout_command", t->timeout_command);
	t->timeout_data = get_timeout(b, sec, "timeout_data", t->timeout_data);
	t->timeout_block = get_timeout(b, sec, "timeout_block", t->timeout_block);
	t->timeout_dot = get_timeout(b, sec, "timeout_dot", t->timeout_dot);
	get_uint(b, sec, "pacing_wait", (unsigned long)t->pacing_wait, 0, 3600, &v);
	t->pacing_wait = (int)v;
	get_uint(b, sec, "session_idle", (unsigned long)t->session_idle, 0, 300, &v);
	t->session_idle = (int)v;
	get_uint(b, sec, "session_reuse_limit", (unsigned long)t->session_reuse_limit, 1, 3600, &v);
	t->session_reuse_limit = (int)v;
	get_enum(b, sec, "direct_send_tls", tls_names, TLS_REQUIRED, &e);
	t->direct_send_tls = (enum tls_policy)e;
	e = UNVERIFIED_DECIDE;
	get_enum(b, sec, "unverified_route", unverified_names, UNVERIFIED_DECIDE, &e);
	t->unverified_route = (enum unverified_action)e;
	ls = get(sec, "local_submitter");
	if (ls != NULL) {
		t->local_submitter = find_submitter(b->conf, ls->s);
		if (t->local_submitter == NULL)
			berr(b, vloc(b, ls), "submitter \"%s\" is not defined", ls->s);
	}
	t->sendmail = get_str(b, sec, "sendmail", t->sendmail);
	t->token_margin = get_timeout(b, sec, "token_margin", t->token_margin);
	t->token_timeout = get_timeout(b, sec, "token_timeout", t->token_timeout);
}

/*
 * need_name - an endpoint must be a DNS name: Microsoft's certificates name
 * smtp.office365.com, *.mail.protection.outlook.com and the login host, so
 * an IP address fails TLS verification and every delivery would defer; and
 * Microsoft's addresses change ("IP addresses are not supported").
 */
static void
need_name(struct build *b, const struct locstr *ls, const char *opt, const char *host, size_t n,
          const char *name)
{
	struct ipaddr ip;
	char h[64];

	if (n == 0 || n >= sizeof(h))
		return;
	memcpy(h, host, n);
	h[n] = '\0';
	if (ip_parse(h, &ip) == 0)
		berr(b, vloc(b, ls),
		     "%s: \"%s\" is an IP address: Microsoft's certificate names %s, so "
		     "TLS verification would fail and every delivery defer; write the name",
		     opt, ls->s, name);
}

/* get_endpoint - PREFIX_host (a DNS name, not an address) and PREFIX_port */
static void
get_endpoint(struct build *b, const struct sec *sec, const char *prefix, const char *def_host,
             unsigned long def_port, const char **host, unsigned *port)
{
	char hname[32], pname[32];
	const struct locstr *ls;
	unsigned long v;

	snprintf(hname, sizeof(hname), "%s_host", prefix);
	snprintf(pname, sizeof(pname), "%s_port", prefix);
	*host = get_str(b, sec, hname, def_host);
	ls = get(sec, hname);
	if (ls != NULL)
		need_name(b, ls, hname, ls->s, strlen(ls->s), def_host);
	get_uint(b, sec, pname, def_port, 1, 65535, &v);
	*port = (unsigned)v;
}

/*
 * The Graph endpoint follows the tenant's cloud, as the token authority
 * does: the authority's host names the cloud unless graph_endpoint is
 * given.  Microsoft's national-cloud page lists these pairs; DoD shares
 * GCC High's authority, so it must name dod-graph.microsoft.us itself.
 */
static const struct {
	const char *authority_host, *graph;
} clouds[] = {
    {"login.microsoftonline.com", "https://graph.microsoft.com"},
    {"login.microsoftonline.us", "https://graph.microsoft.us"},
    {"login.chinacloudapi.cn", "https://microsoftgraph.chinacloudapi.cn"},
    {"login.partner.microsoftonline.cn", "https://microsoftgraph.chinacloudapi.cn"},
};

static void
build_graph_endpoint(struct build *b, const struct sec *sec, struct tenant *t)
{
	const struct locstr *ls = get(sec, "graph_endpoint");
	char *scope;
	size_t i, n;

	t->graph_endpoint = get_str(b, sec, "graph_endpoint", NULL);
	if (ls != NULL) {
		const char *h = ls->s + 8;
		if (strncmp(ls->s, "https://", 8) != 0) {
			berr(b, vloc(b, ls), "graph_endpoint: \"%s\" must be an https:// URL",
			     ls->s);
			return;
		}
		n = h[0] == '[' ? strcspn(h, "]") + 1 : strcspn(h, ":/");
		need_name(b, ls, "graph_endpoint", h, n, "graph.microsoft.com");
		if (strchr(h, '/') != NULL && strcmp(strchr(h, '/'), "/") != 0)
			berr(b, vloc(b, ls),
			     "graph_endpoint: \"%s\" has a path; give the service root, "
			     "e.g. https://graph.microsoft.com",
			     ls->s);
	} else {
		const char *h = t->authority + 8;
		n = strcspn(h, ":/");
		for (i = 0; i < NELEM(clouds); i++)
			if (strlen(clouds[i].authority_host) == n &&
			    m3_ncasecmp(h, clouds[i].authority_host, n) == 0)
				t->graph_endpoint = clouds[i].graph;
	}
	t->graph_scope = get_str(b, sec, "graph_scope", NULL);
	if (t->graph_endpoint == NULL)
		return; /* an authority of no known cloud: graph mode must name it */
	n = strlen(t->graph_endpoint);
	while (n > 0 && t->graph_endpoint[n - 1] == '/')
		n--;
	t->graph_endpoint = arena_strndup(b->conf->arena, t->graph_endpoint, n);
	if (t->graph_scope != NULL || asprintf(&scope, "%s/.default", t->graph_endpoint) < 0)
		return;
	t->graph_scope = arena_strdup(b->conf->arena, scope);
	free(scope);
}

void
build_tenant(struct build *b, const struct sec *sec, struct tenant *t)
{
	unsigned long port;
	const struct locstr *ls;
	size_t i;

	t->name = sec_title(b);
	t->loc = sec_loc(b, sec);
	t->accepted = get_list(b, sec, "accepted_domains", &t->n_accepted, check_domain_pattern);
	if (sec_size(sec, "accepted_domains") == 0)
		berr(b, t->loc,
		     "tenant \"%s\": accepted_domains is missing (the domains "
		     "verified in Microsoft 365)",
		     t->name);
	for (i = 0; i < t->n_accepted; i++)
		m3_lower((char *)t->accepted[i]);
	t->mx_endpoint = get_str(b, sec, "mx_endpoint", NULL);
	ls = get(sec, "mx_endpoint");
	if (ls != NULL) {
		struct addr_err e;
		if (addr_parse_domain(ls->s, strlen(ls->s), &e) < 0)
			berr(b, vloc(b, ls), "mx_endpoint: \"%s\" is not a host name: %s", ls->s,
			     e.msg);
		need_name(b, ls, "mx_endpoint", ls->s, strlen(ls->s),
		          "<domain>-<tld>.mail.protection.outlook.com");
	}
	get_uint(b, sec, "mx_port", DEF_MX_PORT, 1, 65535, &port);
	t->mx_port = (unsigned)port;
	ls = get(sec, "egress_ip");
	if (ls != NULL) {
		struct ipaddr ip;
		if (ip_parse(ls->s, &ip) < 0)
			berr(b, vloc(b, ls), "egress_ip: \"%s\" is not an IP address", ls->s);
		t->egress_ip = arena_strdup(b->conf->arena, ls->s);
	}
	get_bool(b, sec, "direct_send", true, &t->direct_send);
	get_endpoint(b, sec, "smtp", DEF_SMTP_HOST, DEF_SMTP_PORT, &t->smtp_host, &t->smtp_port);
	t->authority = get_str(b, sec, "authority", DEF_AUTHORITY);
	ls = get(sec, "authority");
	if (ls != NULL && strncmp(ls->s, "https://", 8) != 0)
		berr(b, vloc(b, ls), "authority: \"%s\" must be an https:// URL", ls->s);
	else if (ls != NULL) {
		const char *h = ls->s + 8;
		size_t n = h[0] == '[' ? strcspn(h, "]") + 1 : strcspn(h, ":/");
		need_name(b, ls, "authority", h, n, "login.microsoftonline.com");
	}
	t->scope = get_str(b, sec, "scope", DEF_SCOPE);
	build_graph_endpoint(b, sec, t);
	get_endpoint(b, sec, "hve", DEF_HVE_HOST, DEF_HVE_PORT, &t->hve_host, &t->hve_port);
	t->tenant_id = get_str(b, sec, "tenant_id", NULL);
	if (t->tenant_id == NULL) {
		for (i = 0; i < t->n_accepted; i++)
			if (t->accepted[i][0] != '*') {
				t->tenant_id = t->accepted[i];
				break;
			}
	}
}

void
build_app(struct build *b, const struct sec *sec, struct app *a)
{
	struct conf_loc floc;
	int v = ASSERTION_PS256;

	a->name = sec_title(b);
	a->loc = sec_loc(b, sec);
	a->tenant = ref_tenant(b, sec, a->loc);
	a->client_id = get_str(b, sec, "client_id", NULL);
	if (a->client_id == NULL)
		berr(b, a->loc, "app \"%s\": client_id is missing", a->name);
	a->secret_file = get_path(b, sec, "client_secret_file", &floc);
	if (a->secret_file != NULL)
		check_file(b, floc, "client_secret_file", a->secret_file, true);
	a->certificate_file = get_path(b, sec, "certificate_file", &floc);
	if (a->certificate_file != NULL)
		check_file(b, floc, "certificate_file", a->certificate_file, false);
	a->key_file = get_path(b, sec, "key_file", &floc);
	if (a->key_file != NULL)
		check_file(b, floc, "key_file", a->key_file, true);
	get_enum(b, sec, "assertion", alg_names, ASSERTION_PS256, &v);
	a->assertion = (enum assertion_alg)v;
	if (a->secret_file != NULL && a->certificate_file != NULL)
		berr(b, a->loc,
		     "app \"%s\": give client_secret_file or certificate_file, "
		     "not both",
		     a->name);
	else if (a->secret_file == NULL && a->certificate_file == NULL)
		berr(b, a->loc,
		     "app \"%s\": needs client_secret_file or certificate_file "
		     "and key_file",
		     a->name);
	else if (a->certificate_file != NULL && a->key_file == NULL)
		berr(b, a->loc, "app \"%s\": certificate_file needs key_file", a->name);
}

void
build_connector(struct build *b, const struct sec *sec, struct connector *k)
{
	struct conf_loc floc;
	int v = CONNECTOR_CERTIFICATE;

	k->name = sec_title(b);
	k->loc = sec_loc(b, sec);
	k->tenant = ref_tenant(b, sec, k->loc);
	if (get(sec, "type") == NULL)
		berr(b, k->loc, "connector \"%s\": type is missing (certificate | ip)", k->name);
	get_enum(b, sec, "type", connector_names, CONNECTOR_CERTIFICATE, &v);
	k->kind = (enum connector_kind)v;
	k->certificate_file = get_path(b, sec, "certificate_file", &floc);
	if (k->certificate_file != NULL)
		check_file(b, floc, "certificate_file", k->certificate_file, false);
	k->key_file = get_path(b, sec, "key_file", &floc);
	if (k->key_file != NULL)
		check_file(b, floc, "key_file", k->key_file, true);
	if (k->kind == CONNECTOR_CERTIFICATE &&
	    (k->certificate_file == NULL || k->key_file == NULL))
		berr(b, k->loc,
		     "connector \"%s\": a certificate connector needs "
		     "certificate_file and key_file",
		     k->name);
	if (k->kind == CONNECTOR_IP && k->certificate_file != NULL)
		bwarn(b, k->loc, "connector \"%s\": an IP connector ignores certificate_file",
		      k->name);
	if (k->kind == CONNECTOR_IP && k->tenant != NULL && k->tenant->egress_ip == NULL)
		bwarn(b, k->loc,
		      "connector \"%s\": an IP connector relies on the tenant's "
		      "egress_ip, which is not set",
		      k->name);
}

void
build_mailbox(struct build *b, const struct sec *sec, struct mailbox_conf *m)
{
	const struct limit def_msg = DEF_MESSAGES, def_rcpt = DEF_RECIPIENTS;
	const struct limit hve_msg = DEF_HVE_MESSAGES, hve_rcpt = DEF_HVE_RECIPIENTS;
	const struct locstr *app = get(sec, "app");
	struct conf_loc floc;
	unsigned long v;
	int auth;

	m->name = sec_title(b);
	m->loc = sec_loc(b, sec);
	if (parse_addr_value(b, m->loc, "mailbox", m->name, &m->addr) == 0) {
		m->tenant = conf_tenant_of_domain(b->conf, m->addr.domain);
		if (m->tenant == NULL)
			berr(b, m->loc,
			     "mailbox \"%s\": %s is not an accepted domain of "
			     "any tenant",
			     m->name, m->addr.domain);
	}
	get_bool(b, sec, "hve", false, &m->hve);
	m->password_file = get_path(b, sec, "password_file", &floc);
	if (m->password_file != NULL)
		check_file(b, floc, "password_file", m->password_file, true);
	auth = app != NULL ? AUTH_OAUTH : m->password_file ? AUTH_BASIC : -1;
	get_enum(b, sec, "auth", auth_names, auth, &auth);
	if (app != NULL) {
		m->app = find_app(b->conf, app->s);
		if (m->app == NULL)
			berr(b, vloc(b, app), "app \"%s\" is not defined", app->s);
	}
	if (auth < 0) {
		berr(b, m->loc,
		     "mailbox \"%s\": give app = \"NAME\" (OAuth) or "
		     "password_file (Basic)",
		     m->name);
	} else if (auth == AUTH_OAUTH && app == NULL) {
		berr(b, m->loc, "mailbox \"%s\": auth = oauth needs app = \"NAME\"", m->name);
	} else if (auth == AUTH_BASIC && m->password_file == NULL) {
		berr(b, m->loc, "mailbox \"%s\": auth = basic needs password_file", m->name);
	} else if (auth == AUTH_BASIC && !m->hve) { /* HVE keeps Basic */
		bwarn(b, m->loc,
		      "mailbox \"%s\" uses Basic authentication, which Microsoft "
		      "turns off by default at the end of 2026; use an app (OAuth)",
		      m->name);
	}
	m->auth = auth == AUTH_BASIC ? AUTH_BASIC : AUTH_OAUTH;
	if (m->app != NULL && m->tenant != NULL && m->app->tenant != NULL &&
	    m->app->tenant != m->tenant)
		berr(b, m->loc,
		     "mailbox \"%s\" is in tenant \"%s\" but app \"%s\" "
		     "belongs to tenant \"%s\"",
		     m->name, m->tenant->name, m->app->name, m->app->tenant->name);
	m->send_as = get_list(b, sec, "send_as", &m->n_send_as, check_addr_pattern);
	get_bool(b, sec, "smtp_auth", true, &m->smtp_auth);
	get_limit(b, sec, "messages", m->hve ? hve_msg : def_msg, 10000, 86400, &m->messages);
	get_limit(b, sec, "recipients", m->hve ? hve_rcpt : def_rcpt, 1000000, 7 * 86400,
	          &m->recipients);
	get_uint(b, sec, "sessions", DEF_SESSIONS, 1, MAX_SESSIONS, &v);
	m->sessions = (unsigned)v;
	get_uint(b, sec, "recipients_per_message",
	         m->hve ? DEF_HVE_RCPT_PER_MESSAGE : DEF_RCPT_PER_MESSAGE, 1, MAX_RCPT_PER_MESSAGE,
	         &v);
	m->recipients_per_message = (unsigned)v;
	if (m->hve && get(sec, "smtp_auth") != NULL)
		berr(b, m->loc,
		     "mailbox \"%s\": smtp_auth does not apply to an HVE account (hve = yes): "
		     "it always submits to the tenant's hve_host",
		     m->name);
	if (!m->smtp_auth && m->auth != AUTH_OAUTH)
		berr(b, m->loc,
		     "mailbox \"%s\": smtp_auth = no sends through Microsoft Graph, which "
		     "needs an app (OAuth with the Mail.Send application permission)",
		     m->name);
	if (!m->smtp_auth && m->tenant != NULL && m->tenant->graph_endpoint == NULL)
		berr(b, m->loc,
		     "mailbox \"%s\": smtp_auth = no sends through Microsoft Graph, but tenant "
		     "\"%s\" has no graph_endpoint (its authority is not a known cloud)",
		     m->name, m->tenant->name);
}

/* mailbox_may_send_as - the mailbox itself, or one of its Send As patterns */
static bool
mailbox_may_send_as(const struct mailbox_conf *m, const struct addr *a)
{
	size_t i;

	if (addr_equal(&m->addr, a))
		return true;
	for (i = 0; i < m->n_send_as; i++)
		if (addr_match(m->send_as[i], a))
			return true;
	return false;
}

void
build_domain(struct build *b, const struct sec *sec, struct domain_policy *d)
{
	const struct locstr *ls;
	struct addr_err e;
	int mode = MODE_AUTO;

	d->name = sec_title(b);
	d->loc = sec_loc(b, sec);
	if (addr_parse_domain(d->name, strlen(d->name), &e) < 0) {
		berr(b, d->loc, "domain \"%s\" is not a domain name: %s", d->name, e.msg);
		return;
	}
	d->tenant = conf_tenant_of_domain(b->conf, d->name);
	if (d->tenant == NULL)
		berr(b, d->loc, "domain \"%s\" is not an accepted domain of any tenant", d->name);
	get_enum(b, sec, "mode", mode_names, MODE_AUTO, &mode);
	d->mode = (enum mode)mode;
	get_bool(b, sec, "rewrite_header_from", false, &d->rewrite_header_from);

	ls = get(sec, "default_sender");
	if (ls == NULL) {
		berr(b, d->loc, "domain \"%s\": default_sender is missing", d->name);
	} else if (parse_addr_value(b, vloc(b, ls), "default_sender", ls->s, &d->default_sender) ==
	               0 &&
	           d->tenant != NULL &&
	           conf_tenant_of_domain(b->conf, d->default_sender.domain) != d->tenant) {
		berr(b, vloc(b, ls),
		     "default_sender: %s is outside the accepted domains of "
		     "tenant \"%s\"",
		     ls->s, d->tenant->name);
	}
	ls = get(sec, "mailbox");
	if (ls != NULL) {
		struct addr a;
		if (parse_addr_value(b, vloc(b, ls), "mailbox", ls->s, &a) == 0) {
			d->mailbox = conf_mailbox(b->conf, &a);
			if (d->mailbox == NULL)
				berr(b, vloc(b, ls), "mailbox \"%s\" is not defined", ls->s);
		}
	}
	ls = get(sec, "connector");
	if (ls != NULL) {
		d->connector = find_connector(b->conf, ls->s);
		if (d->connector == NULL)
			berr(b, vloc(b, ls), "connector \"%s\" is not defined", ls->s);
		else if (d->tenant != NULL && d->connector->tenant != d->tenant)
			berr(b, vloc(b, ls), "connector \"%s\" belongs to another tenant", ls->s);
	}

	/* Every domain must have a way to deliver. */
	if (mode_has_mailbox(d->mode) && d->mailbox == NULL && get(sec, "mailbox") == NULL)
		berr(b, d->loc, "domain \"%s\": mode %s needs mailbox", d->name,
		     mode_name(d->mode));
	if (d->mode == MODE_RELAY && d->connector == NULL && get(sec, "connector") == NULL)
		berr(b, d->loc, "domain \"%s\": mode relay needs connector", d->name);
	if (d->mode == MODE_HVE && d->mailbox != NULL && !d->mailbox->hve)
		berr(b, d->loc,
		     "domain \"%s\": mode hve needs an HVE account (mailbox %s has no hve = yes)",
		     d->name, d->mailbox->name);
	if (d->mode == MODE_GRAPH && d->mailbox != NULL &&
	    (d->mailbox->auth != AUTH_OAUTH || d->mailbox->hve))
		berr(b, d->loc,
		     "domain \"%s\": mode graph needs a mailbox with an app (an HVE account or "
		     "Basic authentication cannot use Graph)",
		     d->name);
	if (d->mode == MODE_GRAPH && d->tenant != NULL && d->tenant->graph_endpoint == NULL)
		berr(b, d->loc,
		     "domain \"%s\": mode graph, but tenant \"%s\" has no graph_endpoint (its "
		     "authority is not a known cloud)",
		     d->name, d->tenant->name);
	if (d->tenant != NULL && !d->tenant->direct_send &&
	    (d->mode == MODE_DIRECT_SEND || (d->mode == MODE_AUTO && get(sec, "mailbox") == NULL &&
	                                     get(sec, "connector") == NULL)))
		berr(b, d->loc,
		     "domain \"%s\": tenant \"%s\" refuses Direct Send "
		     "(direct_send = false); give the domain a mailbox or a "
		     "connector",
		     d->name, d->tenant->name);
	if (d->mailbox != NULL && !addr_is_null(&d->default_sender) &&
	    !mailbox_may_send_as(d->mailbox, &d->default_sender))
		berr(b, d->loc,
		     "domain \"%s\": mailbox %s has no Send As on the default "
		     "sender; Microsoft would answer 5.7.60 / 5.2.252 SendAsDenied",
		     d->name, d->mailbox->name);
}

static int
check_cidr_item(struct build *b, const struct locstr *ls, const char *name)
{
	struct cidr c;
	const char *err;

	if (cidr_parse(ls->s, &c, &err) < 0) {
		berr(b, vloc(b, ls), "%s: \"%s\" is not a valid CIDR: %s", name, ls->s, err);
		return -1;
	}
	return 0;
}

void
build_submitter(struct build *b, const struct sec *sec, struct submitter *s)
{
	const struct locstr *ls;
	const char **cl;
	size_t i, n;

	s->name = sec_title(b);
	s->loc = sec_loc(b, sec);
	cl = get_list(b, sec, "clients", &n, check_cidr_item);
	s->clients = n ? arena_alloc(b->conf->arena, n * sizeof(*s->clients)) : NULL;
	for (i = 0; i < n && s->clients != NULL; i++) {
		const char *err;
		if (cidr_parse(cl[i], &s->clients[i], &err) == 0)
			s->n_clients++;
	}
	s->sasl_logins = get_list(b, sec, "sasl_logins", &s->n_sasl_logins, NULL);
	s->cert_subjects = get_list(b, sec, "cert_subjects", &s->n_cert_subjects, NULL);
	if (sec_size(sec, "clients") + sec_size(sec, "sasl_logins") +
	        sec_size(sec, "cert_subjects") ==
	    0)
		berr(b, s->loc,
		     "submitter \"%s\": give clients, sasl_logins or "
		     "cert_subjects, or it can never be recognised",
		     s->name);
	s->envelope_senders =
	    get_list(b, sec, "envelope_senders", &s->n_envelope_senders, check_addr_pattern);
	s->send_as = get_list(b, sec, "send_as", &s->n_send_as, check_addr_pattern);
	if (sec_size(sec, "envelope_senders") == 0) {
		s->envelope_senders = s->send_as;
		s->n_envelope_senders = s->n_send_as;
	}
	ls = get(sec, "domain");
	if (ls != NULL) {
		s->domain = conf_domain(b->conf, ls->s);
		if (s->domain == NULL)
			berr(b, vloc(b, ls), "domain \"%s\" is not defined", ls->s);
	} else if (b->conf->n_domains == 1) {
		s->domain = &b->conf->domains[0];
	} else {
		berr(b, s->loc, "submitter \"%s\": domain = \"NAME\" is missing", s->name);
	}
	ls = get(sec, "mailbox");
	if (ls != NULL) {
		struct addr a;
		if (parse_addr_value(b, vloc(b, ls), "mailbox", ls->s, &a) == 0) {
			s->mailbox = conf_mailbox(b->conf, &a);
			if (s->mailbox == NULL)
				berr(b, vloc(b, ls), "mailbox \"%s\" is not defined", ls->s);
		}
	}
}
