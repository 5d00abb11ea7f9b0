/*
 * handoff_wire.h - the request m365-handoff sends to the m365-transport
 * daemon (m365-transport -D): the command line and the environment a
 * pipe(8) delivery would have had, and, with the first bytes
 * (SCM_RIGHTS), its standard input, output and error.  The daemon's
 * delivery process answers with one byte: the exit status.
 *
 *   header   "M365HO1" NUL, then argc, envc and len as 32-bit host-order
 *            integers (the two ends are one machine, one build)
 *   strings  len bytes: argc arguments, then envc "NAME=value" entries,
 *            each ended by a NUL, nothing after the last
 *
 * Pure: no I/O.  Both ends use it; the daemon checks everything it reads
 * with it (a peer of the same user, but a parser of what another process
 * wrote, with a fuzz target: tests/fuzz/fuzz_handoff.c).
 */
#ifndef M3_HANDOFF_WIRE_H
#define M3_HANDOFF_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define HANDOFF_HDR      20
#define HANDOFF_MAX_ARGS 4096 /* pipe(8) with 1,000 recipients and options */
#define HANDOFF_MAX_ENV  256
#define HANDOFF_MAX_LEN  (1u << 20) /* every string, NULs included */

struct handoff_req {
	uint32_t argc, envc, len;
};

/* handoff_header - the header of a request of argc + envc strings, len bytes */
void handoff_header(unsigned char out[HANDOFF_HDR], uint32_t argc, uint32_t envc, uint32_t len);

/* handoff_parse_header - the counts of a header; -1 with *why if it is not one
 * or is out of bounds */
int handoff_parse_header(const unsigned char h[HANDOFF_HDR], struct handoff_req *r,
                         const char **why);

/* handoff_split - point argv[0..argc-1] (argv[argc] = NULL) and
 * envp[0..envc-1] (envp[envc] = NULL) into the string block; -1 with *why
 * if it does not hold exactly that many strings, an argument is missing
 * its program name, or an entry is not NAME=value */
int handoff_split(char *block, const struct handoff_req *r, char **argv, char **envp,
                  const char **why);

#endif
