/*
 * window.h - the limit algorithms on plain arrays, shared by every store
 * backend (LMDB applies them inside a write transaction; the Redis Lua
 * scripts implement the same rules, and one test suite holds both to them).
 *
 * Times are integer milliseconds.  An event at t is inside the window
 * (now - W, now]: it leaves at exactly t + W.
 *
 *  - Messages: exact sliding window.  The last `count` admission times
 *    are kept; a new one fits when fewer than `count` lie in the window.
 *  - Recipients: buckets of width B = W / 96 (15 minutes for 24 h, at
 *    least 1 ms).  A bucket counts while any part of it lies in the window,
 *    so the sum never undercounts: never over the limit, at most one bucket
 *    early (the guarantee the transport gives, m365-transport(8) PACING).
 *    The transport holds and retimes them as it does a message (below).
 *  - Sessions: holders, each with a liveness identity; dead ones are pruned
 *    by the caller's check before counting.
 *
 * Pure; no allocation: callers pass arrays and capacities.
 */
#ifndef M3_WINDOW_H
#define M3_WINDOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WINDOW_BUCKETS 96

/*
 * Message window: stamps[] sorted ascending, *n of them (n <= cap).
 *
 * A message in flight holds its place: the transport admits it with a
 * stamp hold_ms ahead of now (longer than any transfer can take), which
 * counts in every window until the transport retimes it to when the
 * message went (or releases it, retiming to 0, when nothing was sent).  A
 * transport that dies leaves its stamp to expire after hold + W.  While
 * the place that must free is such a stamp, *free_at is WIN_POLL_MS away:
 * it frees when its sender finishes, which no clock can tell.
 */
#define WIN_POLL_MS 250
/* win_msg_take - admit one at now if it fits, recording now + hold_ms and
 * returning it in *free_at; else 0 and *free_at when to try again */
int win_msg_take(uint64_t *stamps, size_t *n, size_t cap, uint64_t count, uint64_t window_ms,
                 uint64_t now, uint64_t hold_ms, uint64_t *free_at);
/* win_msg_retime - move the stamp old to new_stamp (either way), keeping the
 * order; 0 if absent */
int win_msg_retime(uint64_t *stamps, size_t n, uint64_t old, uint64_t new_stamp);
/* win_msg_count - how many lie in the window; *free_at when the next may go */
uint64_t win_msg_count(const uint64_t *stamps, size_t n, uint64_t count, uint64_t window_ms,
                       uint64_t now, uint64_t *free_at);

struct bucket {
	uint64_t start; /* ms, a multiple of the bucket width */
	uint64_t count;
};

/* win_bucket_width - B for a window */
uint64_t win_bucket_width(uint64_t window_ms);
/*
 * win_rcpt_take - add k recipients if the sum stays <= count, recorded in
 * the bucket of now + hold_ms, which *free_at returns (the stamp to give
 * win_rcpt_retime); else 0 and *free_at when to try again.  Recipients in
 * flight hold their place as a message does: a bucket ahead of now counts
 * in every window until its sender retimes them to when they went (or
 * releases them, to 0); hold_ms 0 counts them from now for good.
 */
int win_rcpt_take(struct bucket *b, size_t *n, size_t cap, uint64_t count, uint64_t window_ms,
                  uint64_t k, uint64_t now, uint64_t hold_ms, uint64_t *free_at);
/* win_rcpt_retime - move k recipients taken at stamp old to new_stamp (0:
 * release them); 0 if they were no longer there (expired) */
int win_rcpt_retime(struct bucket *b, size_t *n, size_t cap, uint64_t window_ms, uint64_t k,
                    uint64_t old, uint64_t new_stamp, uint64_t now);
/* win_rcpt_sum - recipients counted at now; *free_at when one more may go */
uint64_t win_rcpt_sum(const struct bucket *b, size_t n, uint64_t count, uint64_t window_ms,
                      uint64_t now, uint64_t *free_at);

struct holder {
	uint64_t boot;  /* hash of the boot id: a reboot frees every slot */
	uint64_t start; /* process start time (clock ticks since boot) */
	uint32_t pid;
	uint32_t pad;
	uint64_t since; /* ms, when taken */
};

/* win_slot_take - prune dead holders (alive() decides), then take a slot if fewer than max */
int win_slot_take(struct holder *h, size_t *n, size_t cap, uint64_t max, const struct holder *me,
                  bool (*alive)(const struct holder *));
/* win_slot_release - remove me; 1 if it was there */
int win_slot_release(struct holder *h, size_t *n, const struct holder *me);
/* win_slot_count - live holders */
uint64_t win_slot_count(const struct holder *h, size_t n, bool (*alive)(const struct holder *));

#endif
