/*
 * lib/conf/ - the configuration: the file's text (conf_text.h), the
 * schema and the loader (conf.h; conf_build.h is private to this folder),
 * the route key file (routekey.h) and the run-time checks of the paths it
 * names (runtime.h).  May include util/ and addr/.  The snapshot it builds
 * is what policy/, store/ and net/ read.
 *
 * conf.h - the configuration of m365relay, read once into plain structs.
 *
 * One main file (libconfuse syntax) and the per-domain policy file it names.
 * conf_load() parses, resolves every reference and validates everything it
 * can without touching the network, then hands back an immutable snapshot
 * that owns all its memory (one arena).  A daemon's reload builds a new
 * snapshot and swaps it only if conf_load() succeeded.
 *
 * This module is the only one that calls libconfuse.
 *
 * Errors: conf_load() returns NULL when there is at least one error; every
 * problem found (not just the first) is in the diag list, each line in the
 * form "FILE:LINE: error: WHAT".  Warnings never make the load fail.
 */
#ifndef M3_CONF_H
#define M3_CONF_H

#include <stdbool.h>
#include <stddef.h>

#include "addr/addr.h"
#include "addr/cidr.h"

/* How a message reaches Microsoft 365 (README: the three ways in). */
enum mode {
	MODE_AUTO,        /* choose per message (configuration only) */
	MODE_SMTP_AUTH,   /* smtp.office365.com:587, a mailbox authenticates */
	MODE_DIRECT_SEND, /* tenant MX endpoint, internal recipients only */
	MODE_RELAY,       /* tenant MX endpoint through an inbound connector */
	MODE_GRAPH,       /* Microsoft Graph sendMail, as a mailbox (app-only token) */
	MODE_HVE,         /* High Volume Email: smtp-hve.office365.com:587, internal only */
};

enum mailbox_auth { AUTH_OAUTH, AUTH_BASIC };
enum assertion_alg { ASSERTION_PS256, ASSERTION_RS256 };
enum connector_kind { CONNECTOR_CERTIFICATE, CONNECTOR_IP };
/* What the milter answers when it cannot decide (internal or store error). */
enum fail_action { FAIL_TEMPFAIL, FAIL_ACCEPT, FAIL_REJECT };

/* Where something was written, for messages. */
struct conf_loc {
	const char *file;
	int line;
};

/* "N/WINDOW": at most count events in any window of `window` seconds. */
struct limit {
	unsigned long count;
	unsigned long window;
};

struct tenant {
	const char *name;
	struct conf_loc loc;
	const char **accepted; /* domain patterns: "contoso.com", "*.contoso.com" */
	size_t n_accepted;
	const char *mx_endpoint; /* contoso-com.mail.protection.outlook.com */
	unsigned mx_port;
	const char *egress_ip; /* the gateway's public address, for SPF checks */
	bool direct_send;      /* false when the tenant has RejectDirectSend */
	const char *smtp_host; /* smtp.office365.com */
	unsigned smtp_port;
	const char *authority;      /* https://login.microsoftonline.com */
	const char *tenant_id;      /* GUID or domain */
	const char *scope;          /* https://outlook.office365.com/.default */
	const char *graph_endpoint; /* https://graph.microsoft.com (follows the cloud) */
	const char *graph_scope;    /* {graph_endpoint}/.default */
	const char *hve_host;       /* smtp-hve.office365.com */
	unsigned hve_port;
};

struct app {
	const char *name;
	struct conf_loc loc;
	const struct tenant *tenant;
	const char *client_id;
	const char *secret_file; /* or: */
	const char *certificate_file, *key_file;
	enum assertion_alg assertion;
};

struct mailbox_conf {
	const char *name; /* the address, as written */
	struct conf_loc loc;
	struct addr addr;
	const struct tenant *tenant;
	enum mailbox_auth auth;
	const struct app *app;     /* AUTH_OAUTH */
	const char *password_file; /* AUTH_BASIC */
	const char **send_as;      /* address patterns it has Send As on */
	size_t n_send_as;
	struct limit messages;           /* default 30/60s */
	struct limit recipients;         /* default 10000/24h */
	unsigned sessions;               /* default 3 */
	unsigned recipients_per_message; /* in one submission (transport); default 500 */
	bool smtp_auth; /* false: SMTP AUTH is off for it; auto sends through Graph */
	bool hve;       /* a High Volume Email account (a mail user, internal only) */
};

struct connector {
	const char *name;
	struct conf_loc loc;
	const struct tenant *tenant;
	enum connector_kind kind;
	const char *certificate_file, *key_file; /* CONNECTOR_CERTIFICATE */
};

struct domain_policy {
	const char *name; /* an accepted domain */
	struct conf_loc loc;
	const struct tenant *tenant;
	enum mode mode;
	struct addr default_sender;
	const struct mailbox_conf *mailbox; /* for smtp-auth; may be NULL */
	const struct connector *connector;  /* for relay; may be NULL */
	bool rewrite_header_from;
};

struct submitter {
	const char *name;
	struct conf_loc loc;
	struct cidr *clients;
	size_t n_clients;
	const char **sasl_logins;
	size_t n_sasl_logins;
	const char **cert_subjects;
	size_t n_cert_subjects;
	const struct domain_policy *domain;
	const struct mailbox_conf *mailbox; /* overrides the domain's; may be NULL */
	const char **envelope_senders;      /* address patterns kept as they are */
	size_t n_envelope_senders;
	const char **send_as; /* header From address patterns allowed */
	size_t n_send_as;
};

struct milter_conf {
	const char *socket;   /* unix:/path or inet:port@host */
	const char *pid_file; /* may be NULL */
	enum fail_action on_error;
	int timeout; /* seconds, libmilter's I/O timeout */
	/* Step 6: what a mailbox over a limit gets at SMTP time (accept: queue
	 * it and let the transport pace it). */
	enum fail_action messages_action, recipients_action;
	const char *metrics_listen; /* "127.0.0.1:9365", or NULL for none */
	/* A domain whose SPF does not pass the tenant's egress_ip is never a
	 * rewrite target for direct-send or relay (checked at start and reload). */
	bool require_spf_pass;
	/* Recipients one message may have at SMTP (452 4.5.3 past it).  Not
	 * Microsoft's per-message limit: Postfix splits each delivery into
	 * m365_destination_recipient_limit recipients, and the transport keeps
	 * each submission within the mailbox's recipients_per_message. */
	unsigned max_recipients;
};

enum tls_policy { TLS_REQUIRED, TLS_OPPORTUNISTIC };
/* Mail whose route the transport cannot verify: the policy decides again
 * (and its refusals bounce), or the mail waits in the queue. */
enum unverified_action { UNVERIFIED_DECIDE, UNVERIFIED_DEFER };

struct transport_conf {
	const char *helo_name;        /* NULL: the host name */
	const char *ca_file;          /* NULL: the system store */
	unsigned long max_size;       /* bytes */
	unsigned long graph_max_size; /* MIME bytes in one Graph sendMail request */
	int timeout_connect, timeout_greeting, timeout_command, timeout_data, timeout_block,
	    timeout_dot;
	int pacing_wait; /* seconds waiting for a slot or window */
	/* the LMTP service's kept sessions: closed after session_idle seconds
	 * unused (0: none kept), never used session_reuse_limit seconds after
	 * they opened */
	int session_idle, session_reuse_limit;
	enum tls_policy direct_send_tls;
	const struct submitter *local_submitter; /* mail with no client address */
	enum unverified_action unverified_route;
	const char *sendmail; /* for the report of mixed outcomes */
	int token_margin;     /* refresh a token with less left (s) */
	int token_timeout;    /* the token endpoint's deadline (s) */
};

enum store_backend_kind { STORE_BACKEND_LMDB, STORE_BACKEND_REDIS };

struct store_conf {
	enum store_backend_kind backend;
	const char *path;         /* LMDB counters; default <state_dir>/store.mdb */
	const char *journal_path; /* LMDB journal; default <state_dir>/journal.mdb */
	unsigned long size_mb;    /* LMDB map size */
	const char *redis_host;   /* host, or a unix socket path */
	unsigned redis_port;
	unsigned redis_db;
	const char *redis_password_file;
	const char *prefix;        /* Redis key prefix */
	enum fail_action on_error; /* what the milter answers when the store fails */
};

#define ROUTE_KEYS_MAX 8 /* keys in route_key_file: the signing one and older ones */
#define ROUTE_KID_LEN  8 /* hex digits of a key's name */

/* A key that signs (the first) or verifies (any) the route header. */
struct route_key {
	const char *secret;
	size_t len;
	char id[ROUTE_KID_LEN + 1];
};

struct conf_index; /* the look-ups' hash tables (private to lib/conf) */

/* A file a load read, as it was read (CONF_SNAPSHOT loads): the stat
 * before reading and the SHA-256 of the bytes read (conf_snap.c). */
struct conf_source {
	const char *path;
	unsigned long long dev, ino, size;
	long long mtime_s, mtime_ns, ctime_s, ctime_ns;
	unsigned char sha[32];
};
#define CONF_SOURCES 3 /* the main file, domain_file, route_key_file */

struct conf {
	struct arena *arena;
	struct conf_index *index;
	const char *file;        /* the main file, as given */
	const char *dir;         /* its directory: relative paths start here */
	const char *domain_file; /* NULL if none */
	const char *user;        /* unprivileged service user */
	const char *state_dir;
	const char *log_file; /* NULL: syslog (facility mail) */
	/* The keys of the route header (route_key_file): the first signs,
	 * every one verifies.  None: the milter's routes are unsigned and the
	 * transport decides every message again. */
	const char *route_key_file;
	/* CONF_SNAPSHOT loads: what was read; unsure if a file changed while
	 * it was read */
	struct conf_source sources[CONF_SOURCES];
	size_t n_sources;
	bool sources_unsure;
	long long sources_t0_s, sources_t0_ns; /* the coarse real time before the first */
	struct route_key *route_keys;
	size_t n_route_keys;
	struct milter_conf milter;
	struct store_conf store;
	struct transport_conf transport;

	struct tenant *tenants;
	size_t n_tenants;
	struct app *apps;
	size_t n_apps;
	struct mailbox_conf *mailboxes;
	size_t n_mailboxes;
	struct connector *connectors;
	size_t n_connectors;
	struct domain_policy *domains;
	size_t n_domains;
	struct submitter *submitters;
	size_t n_submitters;
};

/* Diagnostics gathered while loading. */
struct diag {
	char **lines; /* "FILE:LINE: error: ..." or "...: warning: ..." */
	bool *is_error;
	size_t n, cap;
	size_t n_errors, n_warnings;
};

/* conf_load - read, resolve and validate path; NULL if any error (see diag) */
struct conf *conf_load(const char *path, struct diag *diag);
/* conf_load_flags - conf_load(), with CONF_* flags */
#define CONF_NO_ROUTE_KEYS 1 /* name route_key_file, do not read it (m365ctl route-key) */
#define CONF_NO_FILES      2 /* check no named file, read no key (m365ctl postfix-config) */
struct conf *conf_load_flags(const char *path, struct diag *diag, unsigned flags);
#define CONF_SNAPSHOT 4 /* into the arena a snapshot is made of (conf_snap_write) */
/* conf_load_logged - conf_load(), errors (and warnings if asked) sent to the log */
struct conf *conf_load_logged(const char *path, bool warnings);
/* conf_free - release a snapshot (NULL is fine) */
void conf_free(struct conf *conf);

/*
 * The compiled configuration (conf_snap.c): FILE.snap beside the file,
 * written by m365ctl check-config, mapped by a pipe(8) delivery instead
 * of reading the text while every file it was made from is unchanged.
 */
struct arena;
/* conf_snap_arena - the region a CONF_SNAPSHOT load builds in; NULL if
 * its address is taken */
struct arena *conf_snap_arena(void);
/* conf_snap_path - FILE.snap for a configuration file */
void conf_snap_path(const char *conf_path, char *buf, size_t size);
/* conf_snap_write - write c's snapshot (loaded with CONF_SNAPSHOT from an
 * absolute path); -1 with why */
int conf_snap_write(const struct conf *c, char *why, size_t size);
/* conf_source_read, conf_source_file - record a file a CONF_SNAPSHOT load
 * read: from the bytes read and the stat taken before; or by hashing it
 * now, between two stats (sources_unsure if they differ) */
struct stat;
void conf_source_read(struct conf *c, const char *path, const struct stat *before, const void *buf,
                      size_t len);
void conf_source_file(struct conf *c, const char *path, const struct stat *before);
/* conf_snap_load - the snapshot of conf_path if it is fresh and trusted;
 * NULL with why */
struct conf *conf_snap_load(const char *conf_path, char *why, size_t size);
/* conf_load_fast - conf_snap_load(), else conf_load_logged() (errors
 * only); *from_snapshot says which */
struct conf *conf_load_fast(const char *path, bool *from_snapshot);

/* diag_free - release diagnostics */
void diag_free(struct diag *diag);
/* diag_add - append one diagnostic (printf style) */
void diag_add(struct diag *diag, bool error, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Look-ups, each a hash probe (lib/conf/conf_index.c), never a scan. */
/* conf_tenant_of_domain - the tenant with domain among its accepted domains
 * (the name itself first, then "*.parent" from the nearest parent up) */
const struct tenant *conf_tenant_of_domain(const struct conf *conf, const char *domain);
/* conf_mailbox - the mailbox with that address (case-insensitive) */
const struct mailbox_conf *conf_mailbox(const struct conf *conf, const struct addr *a);
/* conf_domain - the domain policy of that name (case-insensitive) */
const struct domain_policy *conf_domain(const struct conf *conf, const char *name);
/* conf_submitter_login, _subject - the submitter a SASL login (case-insensitive)
 * or a certificate subject (exact) names */
const struct submitter *conf_submitter_login(const struct conf *conf, const char *login);
const struct submitter *conf_submitter_subject(const struct conf *conf, const char *subject);
/* conf_submitter_client - the submitter with the most specific block holding ip */
const struct submitter *conf_submitter_client(const struct conf *conf, const struct ipaddr *ip);

/* mode_parse - the mode named by s (n bytes); -1 if none is */
int mode_parse(const char *s, size_t n, enum mode *mode);
/* mode_has_mailbox - whether a mode sends as a mailbox (smtp-auth, graph, hve) */
bool mode_has_mailbox(enum mode mode);
/* mode_name - "auto", "smtp-auth", "direct-send", "relay", "graph", "hve" */
const char *mode_name(enum mode mode);
/* limit_parse - "30/60s", "10000/24h", "5/2s" -> struct limit; -1 if bad */
int limit_parse(const char *s, struct limit *l, const char **err);
/* limit_format - "30/60s" style text */
const char *limit_format(const struct limit *l, char *buf, size_t size);

#endif
