# shellcheck shell=bash disable=SC2034 # (globals read by run and the other lib/*.sh)
# Kernels: which Debian package is each series, fetching and caching one (kernel, config,
# modules in load order), what its config offers.

# SERIES: package-name regex of its (main) package. `latest` is the newest split image
# (linux-binary-*, with linux-modules-* and linux-base-* of the same version).
declare -A KERNEL_SERIES=(
	[5.10]='^linux-image-5\.10\.0-[0-9]+-amd64-unsigned$'
	[6.1]='^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$'
	[6.12]='^linux-image-6\.12\.[0-9]+\+deb12-amd64-unsigned$'
	[latest]='^linux-binary-unsigned-[0-9][0-9.]*\+deb[0-9]+-amd64$'
)
KERNEL_SERIES_NAMES="5.10, 6.1, 6.12 or latest"
# Bumped when the cache's layout or module set changes: older entries are fetched again.
KERNEL_CACHE_FORMAT=2

# What the VM needs (OPTION=ALLOWED[:MODULE]; ALLOWED: y, m or ym) and what it uses when there
# (`?` after the option: optional). Modules are loaded in dependency order by init.
KERNEL_NEEDS=(
	"CONFIG_DEBUG_FS=y"
	"CONFIG_ANDROID_BINDER_IPC=ym:binder_linux"
	"CONFIG_DRM_VGEM=ym:vgem"
	"CONFIG_DMABUF_HEAPS_SYSTEM?=ym:system_heap"
	"CONFIG_UDMABUF?=ym:udmabuf"
	"CONFIG_DRM_CIRRUS_QEMU?=ym:cirrus"
)
BINDER_DEVICES=binder,hwbinder,vndbinder

# config_value CONFIG OPTION: y, m, a string or nothing.
config_value() { sed -n "s/^$2=//p" "$1"; }

# check_kernel_config CONFIG [LABEL]: die with a clear message if something required is missing.
check_kernel_config() {
	local cfg=$1 label=${2:-$1} need opt allowed val missing=()
	for need in "${KERNEL_NEEDS[@]}"; do
		opt=${need%%=*}
		[[ $opt == *'?' ]] && continue
		allowed=${need#*=}
		allowed=${allowed%%:*}
		val=$(config_value "$cfg" "$opt")
		if [[ -z $val || $allowed != *"$val"* ]]; then
			missing+=("$opt (is '${val:-not set}', need ${allowed/ym/y or m})")
		fi
	done
	if ((${#missing[@]})); then
		printf 'vm: error: the kernel config of %s lacks:\n' "$label" >&2
		printf 'vm:   %s\n' "${missing[@]}" >&2
		die "this kernel cannot run the dmabufd VM tests; pick another with --kernel or DMABUFD_VM_KERNEL_PKG"
	fi
}

# kernel_lacks CONFIG: what of interest to dmabufd this kernel's config does not build (the
# guest reports what it really finds).
kernel_lacks() {
	local cfg=$1 out=()
	[[ -n $(config_value "$cfg" CONFIG_DMABUF_HEAPS_SYSTEM) ]] || out+=("dma-buf heaps")
	[[ -n $(config_value "$cfg" CONFIG_UDMABUF) ]] || out+=(udmabuf)
	[[ $(config_value "$cfg" CONFIG_DMABUF_SYSFS_STATS) == y ]] || out+=("sysfs stats")
	[[ $(config_value "$cfg" CONFIG_ANDROID_BINDERFS) == y ]] || out+=(binderfs)
	local IFS=,
	echo "${out[*]}"
}

# series_of PKG: the series PKG belongs to, or nothing.
series_of() {
	local s
	for s in "${!KERNEL_SERIES[@]}"; do
		[[ $1 =~ ${KERNEL_SERIES[$s]} ]] && echo "$s" && return 0
	done
}

newest_cached_kernel() {
	local series=$1 d
	[[ -d $CACHE/kernels ]] || return 0
	for d in "$CACHE"/kernels/*/.complete; do
		[[ -e $d && $(cat "$d") == "$KERNEL_CACHE_FORMAT" ]] || continue
		d=$(basename "$(dirname "$d")")
		[[ $d =~ ${KERNEL_SERIES[$series]} ]] && echo "$d"
	done | sort -V | tail -n 1
}

# kernel_packages PKG: PKG and the packages that complete it (split images).
kernel_packages() {
	local pkg=$1 ver
	if [[ $pkg == linux-binary-* ]]; then
		ver=${pkg#linux-binary-}
		ver=${ver#unsigned-}
		echo "$pkg linux-modules-$ver linux-base-$ver"
	else
		echo "$pkg"
	fi
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

# fetch_kernel PKG DIR: download PKG (and its companions) and cache its kernel pieces in DIR.
fetch_kernel() {
	local pkg=$1 dir=$2 deb rel cfg vmlinuz ko name mods
	# We hold the cache lock: leftovers of interrupted fetches can go.
	rm -rf "$CACHE"/kernels/.fetch.*
	work=$(mktemp -d "$CACHE/kernels/.fetch.XXXXXX")
	# fetch_kernel runs in the $(prepare_kernel) subshell: this trap is its own.
	trap 'rm -rf "$work"' EXIT
	# shellcheck disable=SC2046 # one package name per word
	msg "downloading $(kernel_packages "$pkg") (once; cached in $dir)"
	# shellcheck disable=SC2046
	papt_download "$work" $(kernel_packages "$pkg")
	for deb in "$work"/*.deb; do
		dpkg-deb -x "$deb" "$work/x" || die "cannot extract $deb"
		rm -f "$deb"
	done
	mkdir -p "$work/out/modules"
	# Older images put config and kernel in /boot, split ones in /usr/lib/modules/<release>.
	cfg=$(find "$work/x/boot" "$work/x/usr/lib/modules" -maxdepth 2 \( -name 'config-*' -o -name config \) -type f 2>/dev/null | head -n 1)
	[[ -n $cfg ]] || die "$pkg has no kernel config"
	if [[ $cfg == */boot/config-* ]]; then
		rel=${cfg##*/config-}
		vmlinuz=$work/x/boot/vmlinuz-$rel
	else
		rel=$(basename "$(dirname "$cfg")")
		vmlinuz=$(find "$work/x/usr/lib/modules/$rel" -maxdepth 1 -name 'vmlinuz*' | head -n 1)
	fi
	cp "$cfg" "$work/out/config"
	check_kernel_config "$work/out/config" "$pkg"
	[[ -f $vmlinuz ]] || die "$pkg has no kernel image for $rel"
	cp "$vmlinuz" "$work/out/vmlinuz"
	printf '%s\n' "$rel" >"$work/out/release"
	printf '%s\n' "$pkg" >"$work/out/package"
	mods=$work/x/lib/modules/$rel
	[[ -d $mods ]] || mods=$work/x/usr/lib/modules/$rel

	# Index the package's modules by name (module names use _ for -).
	declare -A kofile=()
	while IFS= read -r -d '' ko; do
		name=${ko##*/}
		name=${name%%.ko*}
		kofile[${name//-/_}]=$ko
	done < <(find "$mods" -name '*.ko*' -print0)

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
		opt=${opt%'?'}
		[[ $need == *:* ]] || continue
		mod=${need##*:}
		val=$(config_value "$work/out/config" "$opt")
		if [[ $val == m ]]; then
			# Renamed modules (cirrus became cirrus_qemu in 6.15).
			[[ -n ${kofile[$mod]:-} || -z ${kofile[${mod}_qemu]:-} ]] || mod=${mod}_qemu
			add_module "$mod"
		elif [[ $val == y && $mod == binder_linux ]]; then
			cmdline+=("binder.devices=$BINDER_DEVICES")
		fi
	done
	for mod in "${order[@]}"; do
		if [[ $mod == binder_linux ]]; then
			printf '%s.ko devices=%s\n' "$mod" "$BINDER_DEVICES"
		else
			printf '%s.ko\n' "$mod"
		fi
	done >"$work/out/modules.load"
	printf '%s\n' "${cmdline[*]:-}" >"$work/out/cmdline"
	printf '%s\n' "$KERNEL_CACHE_FORMAT" >"$work/out/.complete"
	rm -rf "$dir"
	mv "$work/out" "$dir"
	rm -rf "$work"
	msg "cached kernel $rel: $(cd "$dir/modules" && echo *)"
}

# prepare_kernel SERIES: print the cached kernel directory of SERIES (or of
# DMABUFD_VM_KERNEL_PKG), fetching it if needed.
prepare_kernel() {
	local series=$1 pkg dir
	mkdir -p "$CACHE/kernels"
	cache_lock
	apt_private_init
	pkg=${DMABUFD_VM_KERNEL_PKG:-}
	[[ -n $pkg ]] || pkg=$(newest_cached_kernel "$series")
	if [[ -z $pkg ]]; then
		pkg=$(papt_newest "${KERNEL_SERIES[$series]}")
		[[ -n $pkg ]] || die "no package matching ${KERNEL_SERIES[$series]} in ${APT_SUITES[*]}"
	fi
	[[ $pkg =~ ^[a-z0-9][a-z0-9.+~-]*$ ]] || die "bad kernel package name '$pkg'"
	dir=$CACHE/kernels/$pkg
	[[ $(cat "$dir/.complete" 2>/dev/null) == "$KERNEL_CACHE_FORMAT" ]] || fetch_kernel "$pkg" "$dir"
	check_kernel_config "$dir/config" "$pkg"
	echo "$dir"
}
