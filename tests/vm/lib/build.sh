# shellcheck shell=bash disable=SC2016,SC2030,SC2031
# (SC2016: jq programs are single-quoted on purpose; SC2030/31: RUSTFLAGS is set in subshells on
# purpose.)
# The project's static binaries and vm_* test binaries (target/vm), and rsbinder-tools (the
# rsb_hub service manager), built once into the cache.

# ---------------------------------------------------------------------------
# rsbinder-tools, built once, statically.

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

MANIFEST_NAME=dmabufd-vm-artifacts.tsv
# Static, and not position-independent: glibc's static-pie start-up (self-relocation, ifunc
# resolution) costs a hello-world 37 of its 59 ms under TCG (BENCHMARKS.md), which every
# one-shot command of a benchmark would pay. scripts/hot-text builds with these too.
STATIC_RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static"

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
		# The BPF scan (needs clang, scripts/setup): its suite vm_bpf requires the feature.
		if jq -e --arg m "$REPO_ROOT/Cargo.toml" "$rootpkg | .features | has(\"bpf\")" <<<"$meta" >/dev/null; then
			features=(--features vm-tests,bpf)
		fi
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
