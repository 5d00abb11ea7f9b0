/*
 * runtime.h - what the daemons will meet when they run, checked before they
 * do (m365ctl check-config, m365ctl doctor): the service user exists, it
 * can write state_dir and read every secret the configuration names, and
 * the sendmail command for delivery reports can be run.  conf_load() checks
 * the file's own consistency and the secrets' modes; this checks the
 * machine around it, as the service user will see it.
 *
 * Each problem is reported through fn with what is wrong and how to fix
 * it; runtime_check() returns how many it found.
 */
#ifndef M3_RUNTIME_H
#define M3_RUNTIME_H

#include <stddef.h>

#include "conf.h"

#define RUNTIME_SECRETS 1 /* also the secret files (doctor checks those itself) */

typedef void (*runtime_report)(void *arg, const char *what, const char *fix);

/* runtime_check - report every problem found; returns their number */
size_t runtime_check(const struct conf *c, unsigned flags, runtime_report fn, void *arg);

#endif
