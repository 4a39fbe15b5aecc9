# shellcheck shell=bash
# tests/vm/run's shared helpers: messages, quoting, timing, root, ELF kinds, the cache lock.
# Sourced by run; every lib/*.sh expects the globals run sets up.

msg() { printf 'vm: %s\n' "$*" >&2; }
say() { printf 'vm: %s\n' "$*"; }
die() {
	printf 'vm: error: %s\n' "$*" >&2
	exit 125
}
usage_error() {
	printf 'vm: %s\nTry tests/vm/run --help\n' "$*" >&2
	exit 2
}

# Quote a string for POSIX sh (busybox ash): 'it'\''s'.
sh_quote() {
	local q="'\\''"
	printf "'%s'" "${1//\'/$q}"
}

now_us() { local t=${EPOCHREALTIME//[.,]/}; printf '%s' "$((10#$t))"; }
fmt_secs() { printf '%d.%d' "$(($1 / 1000000))" "$((($1 % 1000000) / 100000))"; }

as_root() {
	if ((EUID == 0)); then "$@"; else sudo "$@"; fi
}

# elf_kind FILE: prints static, dynamic or other (not an ELF executable).
elf_kind() {
	local magic
	magic=$(head -c 4 "$1" 2>/dev/null | od -An -c | tr -d ' \n')
	if [[ $magic != '177ELF' ]]; then
		echo other
	elif ldd "$1" 2>&1 | grep -q -e '=>' -e 'ld-linux'; then
		echo dynamic
	else
		echo static
	fi
}

find_static_busybox() {
	local b
	for b in /usr/bin/busybox /bin/busybox /usr/lib/initramfs-tools/bin/busybox; do
		if [[ -x $b && $(elf_kind "$b") == static ]]; then
			echo "$b"
			return 0
		fi
	done
	return 1
}

# Take the cache lock (fd 9) for the rest of the current (sub)shell.
cache_lock() {
	exec 9>"$CACHE/.lock"
	if ! flock -n 9; then
		msg "waiting for the cache lock ($CACHE/.lock)"
		flock 9
	fi
}
