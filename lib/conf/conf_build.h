/*
 * conf_build.h - private to the configuration loader (conf.c, conf_get.c,
 * conf_sections.c): the build context, the located strings libconfuse
 * hands back, the typed getters that report each problem at its line, the
 * section builders, and every default, written once.  Nothing outside
 * lib/conf*.c includes it.
 */
#ifndef M3_CONF_BUILD_H
#define M3_CONF_BUILD_H

#include <confuse.h>
#include <stdarg.h>
#include <stdbool.h>
#include <string.h>

#include "conf.h"
#include "conf_fast.h"
#include "conf_text.h"

/* Defaults (Exchange Online's published limits; m365relay.conf(5)). */
#define DEF_USER           "m365relay"
#define DEF_STATE_DIR      "/var/lib/m365relay"
#define DEF_ROUTE_KEY_FILE "route.key" /* next to the main file */
/* Under Postfix's queue directory: a chrooted smtpd reaches it as
 * unix:m365relay/milter.sock, and so does one that is not chrooted. */
#define DEF_MILTER_SOCKET    "unix:/var/spool/postfix/m365relay/milter.sock"
#define DEF_PID_FILE         "/run/m365relay/m365-milter.pid"
#define DEF_MILTER_TIMEOUT   300
#define DEF_STORE_MB         64
#define DEF_REDIS_HOST       "127.0.0.1"
#define DEF_REDIS_PORT       6379
#define DEF_REDIS_PREFIX     "m365relay:"
#define DEF_MAX_SIZE         36700160 /* 35 MiB, Exchange Online's default */
#define DEF_TIMEOUT_CONNECT  30       /* RFC 5321 4.5.3.2, and ours */
#define DEF_TIMEOUT_GREETING 300
#define DEF_TIMEOUT_COMMAND  300
#define DEF_TIMEOUT_DATA     120
#define DEF_TIMEOUT_BLOCK    180
#define DEF_TIMEOUT_DOT      600
#define DEF_PACING_WAIT      120
#define DEF_SESSION_IDLE     5   /* s; Postfix's smtp_connection_cache_time_limit is 2 */
#define DEF_SESSION_REUSE    300 /* s; Postfix's smtp_connection_reuse_time_limit */
#define DEF_SENDMAIL         "/usr/sbin/sendmail"
#define DEF_TOKEN_MARGIN     300
#define DEF_TOKEN_TIMEOUT    30
#define DEF_SMTP_HOST        "smtp.office365.com"
#define DEF_SMTP_PORT        587
#define DEF_MX_PORT          25
#define DEF_AUTHORITY        "https://login.microsoftonline.com"
#define DEF_SCOPE            "https://outlook.office365.com/.default"
#define DEF_MESSAGES                                                                               \
	{                                                                                          \
		30, 60                                                                             \
	}
#define DEF_RECIPIENTS                                                                             \
	{                                                                                          \
		10000, 86400                                                                       \
	}
#define DEF_SESSIONS 3
/* High Volume Email accounts: Microsoft publishes no per-account rate;
 * third parties report 100,000 recipients a day per tenant and 50
 * recipients per message [UNCONFIRMED].  The message rate is our pacing. */
#define DEF_HVE_MESSAGES                                                                           \
	{                                                                                          \
		600, 60                                                                            \
	}
#define DEF_HVE_RECIPIENTS                                                                         \
	{                                                                                          \
		100000, 86400                                                                      \
	}
#define DEF_HVE_RCPT_PER_MESSAGE 50
/* Graph: about 4 MB per request is reported by third parties (413 past
 * it) [UNCONFIRMED]; 3 MiB of MIME is 4 MiB of base64. */
#define DEF_GRAPH_MAX_SIZE   3145728
#define DEF_HVE_HOST         "smtp-hve.office365.com"
#define DEF_HVE_PORT         587
#define DEF_RCPT_PER_MESSAGE 500
#define DEF_MAX_RECIPIENTS   10000 /* per message at SMTP: Postfix splits deliveries */
#define MAX_SESSIONS         3     /* Exchange Online: a 4th session gets 432 4.3.2 */
#define MAX_RCPT_PER_MESSAGE 1000  /* Exchange Online's customizable maximum */
#define MAX_CONF_FILE        (16 * 1024 * 1024)

/* The build context ----------------------------------------------------------- */

struct build {
	struct conf *conf;
	struct diag *diag;
	struct conf_text main_text, domain_text;
	const char *main_file, *domain_file;
	const struct sec_mark *at; /* the section being built: its name and line */
	const char *at_file;       /* and its file */
	int errors_before;
	unsigned flags; /* CONF_* */
};

struct enum_name {
	const char *name;
	int value;
};

/* Lookups --------------------------------------------------------------------- */

/*
 * The indexes behind every look-up by name (conf_index.c), built as each
 * kind of section is: nothing in loading or in the policy's per-message
 * look-ups scans a whole list.  In the snapshot's arena.
 */
struct conf_index {
	struct strindex *tenant, *app, *connector, *submitter; /* by name, exact */
	struct strindex *mailbox;                              /* by address, case folded */
	struct strindex *domain;                     /* domain policies by name, case folded */
	struct strindex *accepted;                   /* accepted domain pattern -> tenant */
	struct strindex *login;                      /* SASL login (case folded) -> submitter */
	struct strindex *subject;                    /* certificate subject -> submitter */
	struct strindex *client;                     /* client block (cidr_key) -> submitter */
	unsigned char v4_prefix[33], v6_prefix[129]; /* prefix lengths in use */
};

/* index_* - index a kind once its sections are built; reports duplicates */
int index_tenants(struct build *b);
int index_apps(struct build *b);
int index_mailboxes(struct build *b);
int index_connectors(struct build *b);
int index_domains(struct build *b);
int index_submitters(struct build *b);
const struct tenant *find_tenant(const struct conf *conf, const char *name);
const struct app *find_app(const struct conf *conf, const char *name);
const struct connector *find_connector(const struct conf *conf, const char *name);
const struct submitter *find_submitter(const struct conf *conf, const char *name);

/* conf_get.c: the typed getters (each problem reported at its line) */
void berr(struct build *b, struct conf_loc loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void bwarn(struct build *b, struct conf_loc loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
struct conf_loc sec_loc(struct build *b, const struct sec *sec);
/* sec_title - the name of the section being built (b->at), in the arena */
const char *sec_title(struct build *b);
const struct locstr *get(const struct sec *sec, const char *name);
struct conf_loc vloc(struct build *b, const struct locstr *ls);
const char *get_str(struct build *b, const struct sec *sec, const char *name, const char *def);
int get_uint(struct build *b, const struct sec *sec, const char *name, unsigned long def,
             unsigned long min, unsigned long max, unsigned long *out);
int get_bool(struct build *b, const struct sec *sec, const char *name, bool def, bool *out);
int get_enum(struct build *b, const struct sec *sec, const char *name,
             const struct enum_name *names, int def, int *out);
const char *get_path(struct build *b, const struct sec *sec, const char *name,
                     struct conf_loc *loc);
void check_file(struct build *b, struct conf_loc loc, const char *opt, const char *path,
                bool secret);
const char **get_list(struct build *b, const struct sec *sec, const char *name, size_t *n,
                      int (*check)(struct build *, const struct locstr *, const char *));
int check_addr_pattern(struct build *b, const struct locstr *ls, const char *name);
int check_domain_pattern(struct build *b, const struct locstr *ls, const char *name);
int parse_addr_value(struct build *b, struct conf_loc loc, const char *what, const char *s,
                     struct addr *a);
const struct tenant *ref_tenant(struct build *b, const struct sec *sec, struct conf_loc loc);
int get_limit(struct build *b, const struct sec *sec, const char *name, struct limit def,
              unsigned long max_count, unsigned long max_window, struct limit *out);

/* conf_sections.c: one builder per section */
void load_route_keys(struct build *b, const struct sec *root, struct conf *c);
void build_globals(struct build *b, const struct sec *root);
void build_store(struct build *b, const struct sec *root);
void build_transport(struct build *b, const struct sec *root);
void build_tenant(struct build *b, const struct sec *sec, struct tenant *t);
void build_app(struct build *b, const struct sec *sec, struct app *a);
void build_connector(struct build *b, const struct sec *sec, struct connector *k);
void build_mailbox(struct build *b, const struct sec *sec, struct mailbox_conf *m);
void build_domain(struct build *b, const struct sec *sec, struct domain_policy *d);
void build_submitter(struct build *b, const struct sec *sec, struct submitter *s);

#endif
