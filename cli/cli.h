/*
 * cli.h - m365ctl subcommands.  Each gets the configuration file name and
 * its own arguments (argv[0] is the subcommand) and returns the exit status:
 * 0 success, 1 the check found problems, 2 usage error.
 */
#ifndef M3_CLI_H
#define M3_CLI_H

#include "conf/conf.h"
#include "util/sbuf.h"

int cmd_check_config(const char *conf_file, int argc, char **argv);
int cmd_explain(const char *conf_file, int argc, char **argv);
int cmd_token(const char *conf_file, int argc, char **argv);
int cmd_doctor(const char *conf_file, int argc, char **argv);
int cmd_status(const char *conf_file, int argc, char **argv);
int cmd_route_key(const char *conf_file, int argc, char **argv);
int cmd_postfix_config(const char *conf_file, int argc, char **argv);

/* cli_as_service_user - as root, become the configured user (before touching state); -1 if not
 * possible */
int cli_as_service_user(const struct conf *conf);
/* cli_load - load the configuration, printing every diagnostic; NULL on error */
struct conf *cli_load(const char *conf_file, int quiet_ok);

/* cli_postconf - run "postconf ARGS..." (at most 14), its standard output
 * in out (the caller frees it); -1 if Postfix is not installed or it failed */
int cli_postconf(const char *const args[], struct sbuf *out);
/* cli_postconf_value - one main.cf parameter as Postfix sees it (postconf -h) */
int cli_postconf_value(const char *name, char *val, size_t len);
/* cli_postfix_milter - the smtpd_milters value that reaches the configured
 * socket from a Postfix whose queue directory is queue_dir; sets *chroot_ok
 * to whether a chrooted smtpd reaches it too */
int cli_postfix_milter(const struct conf *conf, const char *queue_dir, char *buf, size_t len,
                       bool *chroot_ok);

#endif
