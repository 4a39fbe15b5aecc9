# shellcheck shell=bash disable=SC2034 # (globals read by run and the other lib/*.sh)
# Debian packages: the host tools the runner needs (the machine's own apt), and kernels from
# Debian suites the machine may not list, through a private apt configuration in the cache (its
# own sources.list, state and cache directories). The machine's apt sources are never changed.

ensure_host_tools() {
	local need=() t
	command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
	find_static_busybox >/dev/null || need+=(busybox-static)
	command -v cpio >/dev/null || need+=(cpio)
	command -v jq >/dev/null || need+=(jq)
	command -v xz >/dev/null || need+=(xz-utils)
	command -v gzip >/dev/null || need+=(gzip)
	command -v flock >/dev/null || need+=(util-linux)
	[[ -f /usr/share/keyrings/debian-archive-keyring.gpg ]] || need+=(debian-archive-keyring)
	if ((${#need[@]})); then
		msg "installing ${need[*]}"
		export DEBIAN_FRONTEND=noninteractive
		if ! as_root apt-get install -y -q "${need[@]}" >&2; then
			msg "apt-get install failed; running apt-get update and retrying"
			as_root apt-get update -q >&2 || true
			as_root apt-get install -y -q "${need[@]}" >&2 || die "cannot install ${need[*]}"
		fi
	fi
	for t in qemu-system-x86_64 cpio jq gzip xz flock dpkg-deb apt-get apt-cache; do
		command -v "$t" >/dev/null || die "'$t' is required but not installed"
	done
	BUSYBOX=$(find_static_busybox) || die "no statically linked busybox (apt-get install busybox-static)"
}


# ---------------------------------------------------------------------------
# Private apt configuration

# The suites kernels come from (see KERNEL_SERIES in kernel.sh), from the archive and its
# security archive.
APT_SUITES=(bullseye bookworm sid trixie-backports)
APT_SECURITY_SUITES=(bullseye-security bookworm-security)

# debian_mirror [security]: the Debian archive (or security archive) the machine's apt uses,
# from its sources; DMABUFD_VM_DEBIAN_MIRROR / _SECURITY_MIRROR override.
debian_mirror() {
	local want=debian override=${DMABUFD_VM_DEBIAN_MIRROR:-}
	if [[ ${1:-} == security ]]; then
		want=debian-security
		override=${DMABUFD_VM_DEBIAN_SECURITY_MIRROR:-}
	fi
	if [[ -n $override ]]; then
		echo "${override%/}"
		return 0
	fi
	cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
		grep -v '^[[:space:]]*#' | grep -oE "https?://[^][ ]+/$want/?( |\$)" | head -n 1 | sed 's:/* *$::'
}

APT_DIR=
APT_CONF=

# apt_private_init: writes the private configuration under $CACHE/apt once.
apt_private_init() {
	APT_DIR=$CACHE/apt
	APT_CONF=$APT_DIR/apt.conf
	local main security keyring=/usr/share/keyrings/debian-archive-keyring.gpg s
	main=$(debian_mirror) || true
	security=$(debian_mirror security) || true
	[[ -n $main ]] || die "cannot tell which Debian archive the machine uses (no .../debian in /etc/apt/sources*); set DMABUFD_VM_DEBIAN_MIRROR"
	[[ -n $security ]] || security=${main%/debian}/debian-security
	[[ -f $keyring ]] || die "$keyring is missing (apt-get install debian-archive-keyring)"
	mkdir -p "$APT_DIR"/{state/lists/partial,cache/archives/partial,sources.list.d,preferences.d}
	{
		for s in "${APT_SUITES[@]}"; do
			printf 'deb [signed-by=%s] %s %s main\n' "$keyring" "$main" "$s"
		done
		for s in "${APT_SECURITY_SUITES[@]}"; do
			printf 'deb [signed-by=%s] %s %s main\n' "$keyring" "$security" "$s"
		done
	} >"$APT_DIR/sources.list.new"
	cat >"$APT_DIR/apt.conf.new" <<CONF
Dir::Etc::SourceList "$APT_DIR/sources.list";
Dir::Etc::SourceParts "$APT_DIR/sources.list.d";
Dir::Etc::Preferences "$APT_DIR/preferences";
Dir::Etc::PreferencesParts "$APT_DIR/preferences.d";
Dir::State "$APT_DIR/state";
Dir::State::status "$APT_DIR/state/status";
Dir::Cache "$APT_DIR/cache";
Acquire::Languages "none";
Debug::NoLocking "true";
CONF
	touch "$APT_DIR/state/status"
	local f
	for f in sources.list apt.conf; do
		if cmp -s "$APT_DIR/$f.new" "$APT_DIR/$f"; then
			rm -f "$APT_DIR/$f.new"
		else
			mv "$APT_DIR/$f.new" "$APT_DIR/$f"
			rm -f "$APT_DIR/updated"
		fi
	done
}

# papt_get ARGS...: apt-get with the private configuration (we hold the cache lock).
papt_get() { apt-get -c "$APT_CONF" "$@"; }
papt_cache() { apt-cache -c "$APT_CONF" "$@"; }

# papt_update: refresh the private package lists.
papt_update() {
	msg "updating the private package lists ($APT_DIR: ${APT_SUITES[*]} ${APT_SECURITY_SUITES[*]})"
	papt_get update -q >"$APT_DIR/update.log" 2>&1 || {
		cat "$APT_DIR/update.log" >&2
		die "apt-get update with $APT_CONF failed"
	}
	touch "$APT_DIR/updated"
}

# papt_newest REGEX: the newest package whose name matches REGEX (updating the lists first if
# they are missing or older than a day: a package they name may be gone from the archive).
papt_newest() {
	[[ -n $(find "$APT_DIR/updated" -mmin -1440 2>/dev/null) ]] || papt_update
	papt_cache pkgnames 2>/dev/null | grep -E "$1" | sort -V | tail -n 1
}

# papt_download DIR PKG...: download PKG... into DIR (updating the lists once on failure).
papt_download() {
	local dir=$1
	shift
	if ! (cd "$dir" && papt_get download "$@") >"$dir/apt.log" 2>&1; then
		msg "apt-get download failed; updating the private lists and retrying"
		papt_update
		(cd "$dir" && papt_get download "$@") >"$dir/apt.log" 2>&1 || {
			cat "$dir/apt.log" >&2
			die "cannot download $*"
		}
	fi
}
