# shellcheck shell=bash disable=SC2016,SC2030,SC2031,SC2034
# (SC2016: jq programs are single-quoted on purpose; SC2030/31: RUSTFLAGS is set
# in subshells on purpose; SC2034: GUEST_RC etc. are read by run.)
# Helpers for tests/vm/run (sourced). Expects the globals set up by run.

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

# ---------------------------------------------------------------------------
# Host tools

ensure_host_tools() {
	local need=() t
	command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
	find_static_busybox >/dev/null || need+=(busybox-static)
	command -v cpio >/dev/null || need+=(cpio)
	command -v jq >/dev/null || need+=(jq)
	command -v xz >/dev/null || need+=(xz-utils)
	command -v gzip >/dev/null || need+=(gzip)
	command -v flock >/dev/null || need+=(util-linux)
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
# Kernel

# Config options the VM needs: OPTION, whether a module is acceptable, the
# module name when it is one.
KERNEL_NEEDS=(
	"CONFIG_DMABUF_HEAPS=y"
	"CONFIG_DMABUF_HEAPS_SYSTEM=ym:system_heap"
	"CONFIG_UDMABUF=ym:udmabuf"
	"CONFIG_DEBUG_FS=y"
	"CONFIG_ANDROID_BINDER_IPC=ym:binder_linux"
)
BINDER_DEVICES=binder,hwbinder,vndbinder

# check_kernel_config CONFIG [LABEL]: die with a clear message if something is missing.
check_kernel_config() {
	local cfg=$1 label=${2:-$1} need opt allowed val missing=()
	for need in "${KERNEL_NEEDS[@]}"; do
		opt=${need%%=*}
		allowed=${need#*=}
		allowed=${allowed%%:*}
		val=$(sed -n "s/^$opt=//p" "$cfg")
		if [[ -z $val || $allowed != *"$val"* ]]; then
			missing+=("$opt (is '${val:-not set}', need ${allowed/ym/y or m})")
		fi
	done
	if ((${#missing[@]})); then
		printf 'vm: error: the kernel config of %s lacks:\n' "$label" >&2
		printf 'vm:   %s\n' "${missing[@]}" >&2
		die "this kernel cannot run the dmabufd VM tests; pick another with DMABUFD_VM_KERNEL_PKG"
	fi
}

newest_cached_kernel() {
	local d
	[[ -d $CACHE/kernels ]] || return 0
	for d in "$CACHE"/kernels/*/.complete; do
		[[ -e $d ]] && basename "$(dirname "$d")"
	done | sort -V | tail -n 1
}

newest_apt_kernel() {
	apt-cache pkgnames linux-image-6.12. 2>/dev/null |
		grep -E '^linux-image-6\.12\.[0-9]+\+deb12-amd64-unsigned$' | sort -V | tail -n 1
}

# module_depends KO: the module's depends= list, comma separated.
module_depends() {
	if command -v modinfo >/dev/null 2>&1; then
		modinfo -F depends "$1"
	else
		# What modinfo does: the depends= string of the .modinfo section.
		tr '\0' '\n' <"$1" | sed -n 's/^depends=//p' | head -n 1
	fi
}

# fetch_kernel PKG DIR: download PKG and cache its kernel pieces in DIR.
fetch_kernel() {
	local pkg=$1 dir=$2 deb rel cfg ko name
	# We hold the cache lock: leftovers of interrupted fetches can go.
	rm -rf "$CACHE"/kernels/.fetch.*
	work=$(mktemp -d "$CACHE/kernels/.fetch.XXXXXX")
	# fetch_kernel runs in the $(prepare_kernel) subshell: this trap is its own.
	trap 'rm -rf "$work"' EXIT
	msg "downloading $pkg (once; cached in $dir)"
	if ! (cd "$work" && apt-get download "$pkg") >"$work/apt.log" 2>&1; then
		msg "apt-get download failed; running apt-get update and retrying"
		as_root apt-get update -q >&2 || true
		(cd "$work" && apt-get download "$pkg") >"$work/apt.log" 2>&1 || {
			cat "$work/apt.log" >&2
			rm -rf "$work"
			die "cannot download $pkg"
		}
	fi
	deb=$(ls "$work"/*.deb)
	dpkg-deb -x "$deb" "$work/x" || die "cannot extract $deb"
	rm -f "$deb"
	mkdir -p "$work/out/modules"
	cfg=$(ls "$work"/x/boot/config-*) || die "$pkg has no /boot/config-*"
	rel=${cfg##*/config-}
	cp "$cfg" "$work/out/config"
	check_kernel_config "$work/out/config" "$pkg"
	cp "$work/x/boot/vmlinuz-$rel" "$work/out/vmlinuz" || die "$pkg has no /boot/vmlinuz-$rel"
	printf '%s\n' "$rel" >"$work/out/release"
	printf '%s\n' "$pkg" >"$work/out/package"

	# Index the package's modules by name (module names use _ for -).
	declare -A kofile=()
	while IFS= read -r -d '' ko; do
		name=${ko##*/}
		name=${name%%.ko*}
		kofile[${name//-/_}]=$ko
	done < <(find "$work/x/lib/modules/$rel" -name '*.ko*' -print0)

	# Modules to load, dependencies first.
	local -a order=()
	declare -A seen=()
	add_module() {
		local m=${1//-/_} src dst dep
		[[ -n ${seen[$m]:-} ]] && return 0
		seen[$m]=1
		src=${kofile[$m]:-}
		[[ -n $src ]] || die "module $m not found in $pkg"
		dst=$work/out/modules/$m.ko
		case $src in
		*.ko.xz) xz -dc "$src" >"$dst" ;;
		*.ko.zst) zstd -q -dc "$src" >"$dst" ;;
		*.ko.gz) gzip -dc "$src" >"$dst" ;;
		*.ko) cp "$src" "$dst" ;;
		*) die "unknown module format: $src" ;;
		esac
		local deps
		deps=$(module_depends "$dst")
		for dep in ${deps//,/ }; do
			add_module "$dep"
		done
		order+=("$m")
	}
	local need opt val mod cmdline=()
	for need in "${KERNEL_NEEDS[@]}"; do
		opt=${need%%=*}
		[[ $need == *:* ]] || continue
		mod=${need##*:}
		val=$(sed -n "s/^$opt=//p" "$work/out/config")
		if [[ $val == m ]]; then
			add_module "$mod"
		elif [[ $mod == binder_linux ]]; then
			cmdline+=("binder.devices=$BINDER_DEVICES")
		fi
	done
	: >"$work/out/modules.load"
	for mod in "${order[@]}"; do
		if [[ $mod == binder_linux ]]; then
			printf '%s.ko devices=%s\n' "$mod" "$BINDER_DEVICES"
		else
			printf '%s.ko\n' "$mod"
		fi
	done >"$work/out/modules.load"
	printf '%s\n' "${cmdline[*]:-}" >"$work/out/cmdline"
	touch "$work/out/.complete"
	rm -rf "$dir"
	mv "$work/out" "$dir"
	rm -rf "$work"
	msg "cached kernel $rel: $(cd "$dir/modules" && echo *)"
}

# prepare_kernel: print the cached kernel directory, fetching it if needed.
prepare_kernel() {
	local pkg dir
	mkdir -p "$CACHE/kernels"
	cache_lock
	pkg=${DMABUFD_VM_KERNEL_PKG:-}
	[[ -n $pkg ]] || pkg=$(newest_cached_kernel)
	if [[ -z $pkg ]]; then
		pkg=$(newest_apt_kernel)
		if [[ -z $pkg ]]; then
			msg "apt-cache knows no linux-image-6.12.*+deb12-amd64-unsigned; running apt-get update"
			as_root apt-get update -q >&2 || true
			pkg=$(newest_apt_kernel)
		fi
		[[ -n $pkg ]] || die "no linux-image-6.12.*+deb12-amd64-unsigned package available from apt"
	fi
	[[ $pkg =~ ^[a-z0-9][a-z0-9.+~-]*$ ]] || die "bad kernel package name '$pkg'"
	dir=$CACHE/kernels/$pkg
	[[ -f $dir/.complete ]] || fetch_kernel "$pkg" "$dir"
	check_kernel_config "$dir/config" "$pkg"
	echo "$dir"
}

# ---------------------------------------------------------------------------
# rsbinder-tools (rsb_hub service manager), built once, statically.

prepare_rsbinder_tools() {
	local root=$CACHE/rsbinder-tools
	if [[ $(cat "$root/version" 2>/dev/null) == "$RSBINDER_TOOLS_VERSION" && -x $root/bin/rsb_hub ]]; then
		echo "$root/bin"
		return 0
	fi
	cache_lock
	if [[ $(cat "$root/version" 2>/dev/null) != "$RSBINDER_TOOLS_VERSION" || ! -x $root/bin/rsb_hub ]]; then
		command -v cargo >/dev/null || die "cargo is needed to build rsbinder-tools"
		msg "building rsbinder-tools =$RSBINDER_TOOLS_VERSION statically (once; cached in $root)"
		rm -rf "$root" "$root.tmp"
		(
			unset CARGO_TARGET_DIR CARGO_ENCODED_RUSTFLAGS
			RUSTFLAGS=$STATIC_RUSTFLAGS cargo install rsbinder-tools --version "=$RSBINDER_TOOLS_VERSION" \
				--locked --root "$root.tmp" --target "$TARGET_TRIPLE"
		) >&2 || die "cargo install rsbinder-tools =$RSBINDER_TOOLS_VERSION failed"
		printf '%s\n' "$RSBINDER_TOOLS_VERSION" >"$root.tmp/version"
		mv "$root.tmp" "$root"
	fi
	echo "$root/bin"
}

# ---------------------------------------------------------------------------
# Project build

MANIFEST_NAME=dmabufd-vm-artifacts.tsv

# Fills BINS and TESTS ("name<TAB>path").
collect_project_artifacts() {
	local manifest=$TARGET_DIR/$MANIFEST_NAME kind name path
	if [[ ! -f $REPO_ROOT/Cargo.toml ]]; then
		msg "no Cargo.toml in $REPO_ROOT: no project binaries or tests"
		return 0
	fi
	if [[ $NO_BUILD == 1 ]]; then
		msg "DMABUFD_VM_NO_BUILD=1: using the binaries already in $TARGET_DIR"
		if [[ ! -f $manifest ]]; then
			scan_target_dir >"$TMP/scan.tsv"
			manifest=$TMP/scan.tsv
		fi
	else
		build_project
	fi
	while IFS=$'\t' read -r kind name path; do
		[[ -n $kind ]] || continue
		[[ -x $path ]] || die "$path (from $manifest) is missing; build again without DMABUFD_VM_NO_BUILD"
		case $kind in
		bin) BINS+=("$name"$'\t'"$path") ;;
		test) TESTS+=("$name"$'\t'"$path") ;;
		esac
	done <"$manifest"
	msg "project binaries: $(list_names "${BINS[@]}")"
	msg "vm test binaries: $(list_names "${TESTS[@]}")"
}

list_names() {
	local e out=()
	for e in "$@"; do out+=("${e%%$'\t'*}"); done
	if ((${#out[@]})); then echo "${out[*]}"; else echo "(none)"; fi
}

# No manifest (built by hand): take the newest binaries in the target dir.
scan_target_dir() {
	local rel=$TARGET_DIR/$TARGET_TRIPLE/release f n
	[[ -d $rel ]] || return 0
	for f in "$rel"/*; do
		[[ -f $f && -x $f && ${f##*/} != *.* ]] && printf 'bin\t%s\t%s\n' "${f##*/}" "$f"
	done
	declare -A newest=()
	while IFS= read -r f; do
		n=${f##*/}
		n=${n%-*}
		[[ -z ${newest[$n]:-} || $f -nt ${newest[$n]} ]] && newest[$n]=$f
	done < <(find "$rel/deps" -maxdepth 1 -type f -perm -u+x -regex '.*/vm_[A-Za-z0-9_]*-[0-9a-f]+$' 2>/dev/null)
	for n in $(printf "%s\n" "${!newest[@]}" | sort); do
		printf 'test\t%s\t%s\n' "$n" "${newest[$n]}"
	done
}

build_project() {
	local meta features=() tests=() t manifest=$TARGET_DIR/$MANIFEST_NAME
	command -v cargo >/dev/null || die "cargo not found (or set DMABUFD_VM_NO_BUILD=1)"
	meta=$(cd "$REPO_ROOT" && cargo metadata --no-deps --format-version 1) ||
		die "cargo metadata failed in $REPO_ROOT"
	local rootpkg='.packages[] | select(.manifest_path == $m)'
	if jq -e --arg m "$REPO_ROOT/Cargo.toml" "$rootpkg | .features | has(\"vm-tests\")" <<<"$meta" >/dev/null; then
		features=(--features vm-tests)
	else
		msg "warning: Cargo.toml has no 'vm-tests' feature; building without it"
	fi
	while IFS= read -r t; do
		[[ -n $t ]] && tests+=(--test "$t")
	done < <(jq -r --arg m "$REPO_ROOT/Cargo.toml" \
		"$rootpkg | .targets[] | select(.kind == [\"test\"] and (.name | startswith(\"vm_\"))) | .name" <<<"$meta")

	local -a common=(--release --target "$TARGET_TRIPLE" --target-dir "$TARGET_DIR" "${features[@]}"
		--message-format=json-render-diagnostics)
	msg "building the project (static, $TARGET_TRIPLE, target dir target/vm)"
	(
		cd "$REPO_ROOT"
		unset CARGO_ENCODED_RUSTFLAGS CARGO_TARGET_DIR
		export RUSTFLAGS=$STATIC_RUSTFLAGS
		cargo build --bins "${common[@]}" >"$TMP/build.json"
	) || die "cargo build failed (DMABUFD_VM_NO_BUILD=1 runs what is already in target/vm)"
	if ((${#tests[@]})); then
		(
			cd "$REPO_ROOT"
			unset CARGO_ENCODED_RUSTFLAGS CARGO_TARGET_DIR
			export RUSTFLAGS=$STATIC_RUSTFLAGS
			cargo test --no-run "${tests[@]}" "${common[@]}" >"$TMP/test.json"
		) || die "cargo test --no-run failed (DMABUFD_VM_NO_BUILD=1 runs what is already in target/vm)"
	else
		: >"$TMP/test.json"
	fi
	mkdir -p "$TARGET_DIR"
	{
		jq -r 'select(.reason == "compiler-artifact" and .executable != null
			and (.target.kind | index("bin")) != null)
			| ["bin", .target.name, .executable] | @tsv' "$TMP/build.json"
		jq -r 'select(.reason == "compiler-artifact" and .executable != null
			and .target.kind == ["test"] and (.target.name | startswith("vm_")))
			| ["test", .target.name, .executable] | @tsv' "$TMP/test.json"
	} | sort -u >"$manifest.$$"
	mv "$manifest.$$" "$manifest"
}

# ---------------------------------------------------------------------------
# initramfs

# copy_shared_libs STAGE FILE: copy FILE's shared libraries (per ldd) to the
# same paths under STAGE.
copy_shared_libs() {
	local stage=$1 file=$2 lib
	while IFS= read -r lib; do
		[[ -e $stage$lib ]] && continue
		mkdir -p "$stage$(dirname "$lib")"
		cp -L "$lib" "$stage$lib"
	done < <(ldd "$file" 2>/dev/null | grep -o '/[^ ]*' | sort -u)
}

write_guest_config() {
	local etc=$1 a name
	{
		printf 'VM_NONCE=%s\n' "$NONCE"
		printf 'VM_MODE=%s\n' "$MODE"
		printf 'VM_WITH_SERVICE=%s\n' "$WITH_SERVICE"
	} >"$etc/config"
	{
		for name in $(compgen -e | LC_ALL=C sort); do
			case $name in
			RUST_LOG | RUST_BACKTRACE | DMABUFD_*) printf 'export %s=%s\n' "$name" "$(sh_quote "${!name}")" ;;
			esac
		done
	} >"$etc/env"
	{
		printf 'set --'
		for a in "${CMD[@]}"; do printf ' %s' "$(sh_quote "$a")"; done
		printf '\n'
	} >"$etc/cmd"
}

build_initramfs() {
	local initrd=$1 stage=$TMP/root p e name path f kind
	rm -rf "$stage"
	mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,etc/dmabufd-vm,lib/modules,proc,sys,dev,tmp,run,root,tests,extra}
	cp "$BUSYBOX" "$stage/bin/busybox"
	while IFS= read -r p; do
		[[ -n $p && ! -e $stage/$p && ! -L $stage/$p ]] && ln -s /bin/busybox "$stage/$p"
	done < <("$BUSYBOX" --list-full)
	cat >"$stage/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
system:x:1000:1000:system:/:/bin/sh
app:x:10001:10001:app:/:/bin/sh
nobody:x:65534:65534:nobody:/:/bin/false
EOF
	cat >"$stage/etc/group" <<'EOF'
root:x:0:
system:x:1000:
app:x:10001:
nogroup:x:65534:
EOF
	printf '127.0.0.1 localhost dmabufd-vm\n' >"$stage/etc/hosts"

	cp "$KDIR"/modules/*.ko "$stage/lib/modules/" 2>/dev/null || true
	cp "$KDIR/modules.load" "$stage/lib/modules/modules.load"

	if ((RSB_TOOLS)); then
		for f in "$RSB_BIN"/*; do
			rm -f "$stage/usr/bin/${f##*/}"
			cp "$f" "$stage/usr/bin/"
		done
	fi
	for e in "${BINS[@]}"; do
		name=${e%%$'\t'*}
		path=${e#*$'\t'}
		rm -f "$stage/usr/bin/$name"
		cp "$path" "$stage/usr/bin/$name"
		# Same path as on the host, so env!("CARGO_BIN_EXE_<name>") works in tests. /tmp and /run
		# get fresh tmpfs mounts in the guest, so links there are made by init after mounting.
		case $path in
		/tmp/* | /run/*) printf '%s\t%s\n' "$name" "$path" >>"$stage/etc/dmabufd-vm/binlinks" ;;
		/dev/* | /proc/* | /sys/* | /usr/bin/*) ;;
		/*)
			mkdir -p "$stage$(dirname "$path")"
			ln -sfn "/usr/bin/$name" "$stage$path"
			;;
		esac
	done
	for e in "${TESTS[@]}"; do
		cp "${e#*$'\t'}" "$stage/tests/${e%%$'\t'*}"
	done
	if [[ -n ${VM_EXTRA_DIR:-} ]]; then
		cp -RL --preserve=mode,timestamps "$VM_EXTRA_DIR/." "$stage/extra/"
	fi
	# Dynamically linked executables get their libraries (static is better).
	while IFS= read -r -d '' f; do
		kind=$(elf_kind "$f")
		if [[ $kind == dynamic ]]; then
			case $f in
			"$stage"/extra/*) ;;
			*) msg "warning: ${f#"$stage"} is dynamically linked; copying its shared libraries" ;;
			esac
			copy_shared_libs "$stage" "$f"
		fi
	done < <(find "$stage/usr/bin" "$stage/tests" "$stage/extra" -type f -perm -u+x -print0)

	write_guest_config "$stage/etc/dmabufd-vm"
	install -m 0755 "$SCRIPT_DIR/init" "$stage/init"
	(cd "$stage" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
		cpio --null -o -H newc --owner=0:0 --quiet) | gzip -1 >"$initrd"
}

# ---------------------------------------------------------------------------
# QEMU

kvm_usable() {
	[[ -c /dev/kvm && -r /dev/kvm && -w /dev/kvm ]] && grep -qwE 'vmx|svm' /proc/cpuinfo
}

choose_accel() {
	case ${DMABUFD_VM_ACCEL:-auto} in
	kvm | tcg) echo "$DMABUFD_VM_ACCEL" ;;
	auto) if kvm_usable; then echo kvm; else echo tcg; fi ;;
	*) die "DMABUFD_VM_ACCEL must be kvm, tcg or auto" ;;
	esac
}

# Suite bookkeeping (suite mode).
SUITE_PASSED=0
SUITE_FAILED=0
SUITE_PROBLEMS=()
CUR_TEST=
CUR_FAILED=0

suite_begin() {
	CUR_TEST=$1
	CUR_FAILED=0
}
suite_result() {
	[[ -n $CUR_TEST ]] || return 0
	SUITE_PASSED=$((SUITE_PASSED + $1))
	SUITE_FAILED=$((SUITE_FAILED + $2))
	CUR_FAILED=$((CUR_FAILED + $2))
}
# suite_end NAME RC|-: RC "-" means it never finished.
suite_end() {
	local name=$1 rc=$2
	if [[ $rc == - ]]; then
		SUITE_FAILED=$((SUITE_FAILED + 1))
		SUITE_PROBLEMS+=("$name (did not finish)")
	elif ((rc != 0)); then
		if ((CUR_FAILED == 0)); then
			SUITE_FAILED=$((SUITE_FAILED + 1))
			SUITE_PROBLEMS+=("$name (exit status $rc without a failed test: crashed?)")
		else
			SUITE_PROBLEMS+=("$name (exit status $rc)")
		fi
	fi
	CUR_TEST=
}
suite_summary() {
	[[ -n $CUR_TEST ]] && suite_end "$CUR_TEST" -
	if ((${#SUITE_PROBLEMS[@]})); then
		local IFS=';'
		say "failed test binaries:${SUITE_PROBLEMS[*]/#/ }"
	fi
	echo "vm: $SUITE_PASSED passed, $SUITE_FAILED failed"
}

# run_guest ACCEL: boot the VM, stream its console, set GUEST_RC (an exit
# status, or "kvm-failed" when KVM broke before the guest started).
run_guest() {
	local accel=$1 cpu cmdline fifo cfd line clean start now deadline rem
	local booted=0 exit_rc='' timed_out=0 kvm_failed=0 panicked=0 qrc=0 blanks=0 ended=0
	case $accel in
	kvm) cpu=host ;;
	*) cpu=max ;;
	esac
	cmdline="console=ttyS0 quiet panic=-1 $(cat "$KDIR/cmdline" 2>/dev/null || true) ${DMABUFD_VM_APPEND:-}"
	local -a qemu=(qemu-system-x86_64 -accel "$accel" -cpu "$cpu"
		-m "${DMABUFD_VM_MEM:-2048}" -smp "${DMABUFD_VM_SMP:-2}"
		-nographic -vga none -no-reboot -nic none
		-kernel "$KDIR/vmlinuz" -initrd "$INITRD" -append "$cmdline")
	# qboot boots a -kernel faster than SeaBIOS.
	[[ -f /usr/share/qemu/qboot.rom ]] && qemu+=(-bios /usr/share/qemu/qboot.rom)
	# Die with the runner even if it is SIGKILLed.
	if setpriv --help 2>/dev/null | grep -q -- --pdeathsig; then
		qemu=(setpriv --pdeathsig KILL -- "${qemu[@]}")
	fi

	fifo=$TMP/console.$accel
	rm -f "$fifo"
	mkfifo "$fifo"
	say "booting $KREL ($accel, $(du -m "$INITRD" | cut -f1) MiB initramfs, timeout ${TIMEOUT}s)"
	[[ ${DMABUFD_VM_VERBOSE:-0} == 1 ]] && msg "${qemu[*]}"
	start=$(now_us)
	deadline=$((start + TIMEOUT * 1000000))
	"${qemu[@]}" </dev/null >"$fifo" 2>&1 &
	QEMU_PID=$!
	exec {cfd}<"$fifo"

	local re_exit="DMABUFD_VM_EXIT=([0-9]+) nonce=$NONCE"
	local re_begin="DMABUFD_VM_TEST_BEGIN ([^ ]+) nonce=$NONCE"
	local re_end="DMABUFD_VM_TEST_END ([^ ]+) rc=([0-9]+) nonce=$NONCE"
	local re_result='test result: [A-Za-z]+\. ([0-9]+) passed; ([0-9]+) failed'
	local re_ansi=$'\e''\[[0-9;?]*[A-Za-z]'

	while :; do
		now=$(now_us)
		rem=$((deadline - now))
		if ((rem <= 0)); then
			if [[ -n $exit_rc ]]; then break; fi
			timed_out=1
			break
		fi
		line=
		if IFS= read -r -t "$(printf '%d.%06d' $((rem / 1000000)) $((rem % 1000000)))" -u "$cfd" line; then
			:
		else
			local st=$?
			if ((st > 128)); then
				# Timed out; keep what was read of an unfinished line.
				[[ -n $line ]] && printf '%s\n' "${line%$'\r'}"
				continue
			fi
			ended=1 # EOF: qemu is gone
			[[ -z $line ]] && break
		fi
		line=${line%$'\r'}
		printf '%s\n' "$line" >>"$TMP/console.log"

		# Hold back blank lines: the one before a marker line is ours.
		if [[ -z $line ]]; then
			blanks=$((blanks + 1))
			continue
		fi
		if [[ $line =~ $re_exit || $line =~ $re_end ]]; then
			((blanks > 0)) && blanks=$((blanks - 1))
		fi
		while ((blanks > 0)); do
			echo
			blanks=$((blanks - 1))
		done
		printf '%s\n' "$line"

		if ((!booted)) && [[ $line == "vm-init: up"* ]]; then
			booted=1
			say "booted in $(fmt_secs $(($(now_us) - start)))s ($accel)"
		fi
		if [[ $accel == kvm && $booted == 0 && ${DMABUFD_VM_ACCEL:-auto} == auto &&
			$line == *"KVM internal error"* ]]; then
			kvm_failed=1
			break
		fi
		[[ $line == *"Kernel panic - not syncing"* ]] && panicked=1
		if [[ $line =~ $re_exit ]]; then
			exit_rc=${BASH_REMATCH[1]}
			# The guest powers off now; do not wait long for qemu.
			local grace=$(($(now_us) + 15000000))
			((grace < deadline)) && deadline=$grace
			continue
		fi
		if [[ $MODE == suite ]]; then
			if [[ $line =~ $re_begin ]]; then
				[[ -n $CUR_TEST ]] && suite_end "$CUR_TEST" -
				suite_begin "${BASH_REMATCH[1]}"
			elif [[ $line =~ $re_end ]]; then
				suite_end "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"
			else
				clean=${line//$re_ansi/}
				[[ $clean =~ $re_result ]] && suite_result "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"
			fi
		fi
		((ended)) && break
	done
	exec {cfd}<&-

	if kill -0 "$QEMU_PID" 2>/dev/null; then
		kill -TERM "$QEMU_PID" 2>/dev/null || true
		for _ in 1 2 3 4 5 6 7 8 9 10; do
			kill -0 "$QEMU_PID" 2>/dev/null || break
			sleep 0.2
		done
		kill -KILL "$QEMU_PID" 2>/dev/null || true
	fi
	wait "$QEMU_PID" 2>/dev/null || qrc=$?
	QEMU_PID=

	if ((kvm_failed)) || [[ $accel == kvm && $booted == 0 && $timed_out == 0 &&
		${DMABUFD_VM_ACCEL:-auto} == auto ]]; then
		GUEST_RC=kvm-failed
		return 0
	fi
	if ((timed_out)); then
		say "guest timed out after ${TIMEOUT}s"
		[[ $MODE == suite ]] && suite_summary
		GUEST_RC=124
		return 0
	fi
	if [[ -z $exit_rc ]]; then
		if ((panicked)); then
			say "error: the guest kernel panicked (qemu exit status $qrc)"
		elif ((!booted)); then
			say "error: the guest never started its init (qemu exit status $qrc); see the output above"
		else
			say "error: the guest stopped without reporting an exit status (init crashed or kernel panic; qemu exit status $qrc)"
		fi
		[[ $MODE == suite ]] && suite_summary
		GUEST_RC=125
		return 0
	fi
	if [[ $MODE == suite ]]; then
		suite_summary
		if ((SUITE_FAILED > 0 || exit_rc != 0)); then
			GUEST_RC=1
		else
			GUEST_RC=0
		fi
	else
		GUEST_RC=$exit_rc
	fi
}
