# shellcheck shell=bash
# The guest's initramfs: busybox, the project's binaries and tests, the kernel's modules, the
# run configuration init reads.

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
		printf 'VM_ANDROID_PROFILE=%s\n' "$ANDROID_PROFILE"
		printf 'VM_SERIES=%s\n' "$SERIES"
	} >"$etc/config"
	cp "$SCRIPT_DIR/needs" "$etc/needs"
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
u0_a57:x:10057:10057:u0_a57:/:/bin/sh
nobody:x:65534:65534:nobody:/:/bin/false
EOF
	cat >"$stage/etc/group" <<'EOF'
root:x:0:
system:x:1000:
app:x:10001:
u0_a57:x:10057:
readproc:x:3009:system
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
