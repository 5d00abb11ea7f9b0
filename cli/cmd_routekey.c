/*
 * cmd_routekey.c - m365ctl route-key [--rotate]: make the key that signs
 * the route header (routekey.h), or put a new one in front.
 *
 * Without --rotate it only creates a missing file (and says what a present
 * one holds), so install scripts may run it every time.  As root, the file
 * is given to the service user, who reads it in the milter (after a reload)
 * and in the transport; mode 0600 either way.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "routekey.h"

static int
usage(void)
{
	fprintf(stderr, "usage: m365ctl [-c FILE] route-key [--rotate]\n");
	return 2;
}

int
cmd_route_key(const char *conf_file, int argc, char **argv)
{
	static const struct option opts[] = {{"rotate", no_argument, NULL, 'r'},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	struct diag diag = {0};
	struct conf *conf, *after;
	struct passwd *pw = NULL;
	struct stat st;
	bool rotate = false, exists;
	char err[512];
	size_t i;
	int c, rc = 1;

	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'r')
			rotate = true;
		else
			return usage();
	}
	if (optind != argc)
		return usage();
	conf = conf_load_flags(conf_file, &diag, CONF_NO_ROUTE_KEYS);
	if (conf == NULL) {
		for (i = 0; i < diag.n; i++)
			fprintf(stderr, "%s\n", diag.lines[i]);
		diag_free(&diag);
		return 1;
	}
	diag_free(&diag);
	if (conf->route_key_file == NULL) {
		fprintf(stderr, "m365ctl: no route_key_file (this cannot happen)\n");
		goto out;
	}
	exists = lstat(conf->route_key_file, &st) == 0;
	if (exists && !rotate) {
		struct arena *a = arena_new();
		struct route_key *keys;
		size_t n;
		if (a == NULL || route_keys_read(conf->route_key_file, a, &keys, &n, err,
						 sizeof(err)) < 0) {
			fprintf(stderr, "m365ctl: %s\n", a ? err : "out of memory");
			arena_free(a);
			goto out;
		}
		printf("%s holds %zu key(s); key %s signs (--rotate makes a new one)\n",
		       conf->route_key_file, n, keys[0].id);
		arena_free(a);
		rc = 0;
		goto out;
	}
	if (geteuid() == 0) {
		pw = getpwnam(conf->user);
		if (pw == NULL)
			fprintf(stderr, "m365ctl: warning: service user %s does not exist; the key "
					"stays root's until you run: chown %s %s\n",
				conf->user, conf->user, conf->route_key_file);
	}
	if (route_keys_write(conf->route_key_file, rotate ? 1 : 0, pw ? pw->pw_uid : 0,
			     pw ? pw->pw_gid : 0, err, sizeof(err)) < 0) {
		fprintf(stderr, "m365ctl: %s\n", err);
		goto out;
	}
	after = conf_load(conf_file, &diag);
	if (after == NULL || after->n_route_keys == 0) {
		for (i = 0; i < diag.n; i++)
			fprintf(stderr, "%s\n", diag.lines[i]);
		fprintf(stderr, "m365ctl: wrote %s, but the configuration does not load it\n",
			conf->route_key_file);
		diag_free(&diag);
		conf_free(after);
		goto out;
	}
	diag_free(&diag);
	if (rotate && after->n_route_keys > 1)
		printf("%s: key %s signs from the milter's next reload (SIGHUP); key %s still "
		       "verifies mail it signed: rotate again once the queue holds none\n",
		       conf->route_key_file, after->route_keys[0].id, after->route_keys[1].id);
	else
		printf("created %s: key %s signs; reload m365-milter (SIGHUP) to use it\n",
		       conf->route_key_file, after->route_keys[0].id);
	conf_free(after);
	rc = 0;
out:
	conf_free(conf);
	return rc;
}
