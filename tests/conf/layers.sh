#!/bin/sh
# layers.sh - lib/ is layered, and the tree shows it: util <- addr <- conf
# <- {policy, store, net}.  Each folder's namesake header states what the
# folder may include; this test holds every #include "..." to that:
#  - inside lib/X, a bare name is a header of X itself, and "Y/name.h"
#    names a folder X may include;
#  - programs and tests name lib headers with their folder, never a
#    private one (conf_build.h, store_impl.h, addr_lex.h).
set -u
: "${top_srcdir:=.}"
cd "$top_srcdir" || exit 99
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

allowed() { # folder -> the folders it may include
	case $1 in
	util) echo "" ;;
	addr) echo "util" ;;
	conf) echo "util addr" ;;
	policy | net) echo "util addr conf" ;;
	store) echo "util conf" ;;
	*) echo "?" ;;
	esac
}
private="conf_build.h store_impl.h addr_lex.h"
checked=0

for dir in lib/*/; do
	folder=$(basename "$dir")
	ok=$(allowed "$folder")
	[ "$ok" = "?" ] && fail "lib/$folder: a folder layers.sh does not know (add it to allowed())"
	for f in "$dir"*.[ch]; do
		for inc in $(sed -n 's/^#include "\([^"]*\)".*/\1/p' "$f"); do
			checked=$((checked + 1))
			case $inc in
			config.h | conf_layout.h) ;; # made by configure, by the build
			*/*)
				to=${inc%%/*}
				[ -f "lib/$inc" ] || fail "$f: includes $inc, which lib/ does not have"
				case " $ok " in
				*" $to "*) ;;
				*) fail "$f: includes $inc, but lib/$folder may include only: ${ok:-libc}" ;;
				esac
				;;
			*) [ -f "$dir$inc" ] || fail "$f: includes \"$inc\", not a header of lib/$folder" ;;
			esac
		done
	done
done

for f in $(find milter transport cli tests/unit tests/fuzz bench -name '*.[ch]' 2>/dev/null); do
	for inc in $(sed -n 's/^#include "\([^"]*\)".*/\1/p' "$f"); do
		checked=$((checked + 1))
		base=${inc##*/}
		case " $private " in *" $base "*) fail "$f: includes the private $inc" ;; esac
		case $inc in
		*/*) [ -f "lib/$inc" ] || fail "$f: includes $inc, which lib/ does not have" ;;
		*) if ls lib/*/"$inc" >/dev/null 2>&1; then
			fail "$f: includes \"$inc\" without its folder ($(cd lib && ls */"$inc"))"
		fi ;;
		esac
	done
done

[ "$checked" -gt 100 ] || fail "only $checked includes seen: is the tree there?"
echo "$checked includes checked, $failures failures"
[ "$failures" -eq 0 ]
