# common.sh - sourced by the shell tests (through tests/lib/postfix.sh and
# tests/store/lib.sh, or directly): what they all need.
#
#   free_port                      an unused TCP port on loopback
#   wait_until SECONDS WHAT CMD... run CMD every 0.05 s until it succeeds (0);
#                                  after SECONDS, say what was awaited (1)
#   pid_gone PID                   the process has exited (reaped, or a zombie)

free_port() {
	/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_until() {
	_wu_secs=$1
	_wu_end=$(($1 * 20))
	_wu_what=$2
	shift 2
	_wu_i=0
	while [ "$_wu_i" -lt "$_wu_end" ]; do
		"$@" && return 0
		sleep 0.05
		_wu_i=$((_wu_i + 1))
	done
	"$@" && return 0
	echo "timed out after $_wu_secs s waiting for $_wu_what"
	return 1
}

pid_gone() {
	[ ! -e "/proc/$1" ] && return 0
	# the state is the field after the ")" that closes the command name
	case $(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) in "" | Z* | X*) return 0 ;; esac
	return 1
}
