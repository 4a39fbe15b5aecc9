# shellcheck shell=bash disable=SC2034
# (SC2034: GUEST_RC and the SUITE_* counts are read by run.)
# The guest: QEMU, its console streamed to the terminal and the log, the markers init prints
# (booted, exit status), and in suite mode the summary, counted by scripts/count-results.

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

# run_guest ACCEL: boot the VM, stream its console, set GUEST_RC (an exit
# status, "kvm-failed" when KVM broke before the guest started, or "boot-panic" when the kernel
# panicked before init started, so before any project code ran).
run_guest() {
	local accel=$1 cpu cmdline fifo cfd line start now deadline rem
	local booted=0 exit_rc='' timed_out=0 kvm_failed=0 panicked=0 qrc=0 blanks=0 ended=0
	case $accel in
	kvm) cpu=host ;;
	*) cpu=max ;;
	esac
	# no_timer_check: under TCG on a busy host the IO-APIC timer check can fail and panic the boot
	# ("IO-APIC + timer doesn't work!", seen on 6.1).
	cmdline="console=ttyS0 quiet panic=-1 no_timer_check $(cat "$KDIR/cmdline" 2>/dev/null || true) ${DMABUFD_VM_APPEND:-}"
	local -a qemu=(qemu-system-x86_64 -accel "$accel" -cpu "$cpu"
		-m "${DMABUFD_VM_MEM:-2048}" -smp "${DMABUFD_VM_SMP:-2}"
		-nographic -vga none -no-reboot -nic none
		-kernel "$KDIR/vmlinuz" -initrd "$INITRD" -append "$cmdline")
	# A second DRM device for the cirrus driver: an importer of vgem's buffers (attachments).
	compgen -G "$KDIR/modules/cirrus*.ko" >/dev/null && qemu+=(-device cirrus-vga)
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
	local re_end="DMABUFD_VM_TEST_END ([^ ]+) rc=([0-9]+) nonce=$NONCE"

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
	if [[ -z $exit_rc ]] && ((panicked && !booted)); then
		GUEST_RC=boot-panic
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

# Suite results (suite mode), counted from the console log.
SUITE_FAILED=0

# suite_summary: prints problems, skip reasons and `vm-SERIES: P passed, F failed, S skipped`.
suite_summary() {
	local passed skipped kind rest problems=() skips=()
	{
		read -r passed SUITE_FAILED skipped
		while read -r kind rest; do
			case $kind in
			problem) problems+=("$rest") ;;
			skip) skips+=("$rest") ;;
			esac
		done
	} < <(awk -v nonce="$NONCE" -f "$REPO_ROOT/scripts/count-results" "$TMP/console.log" 2>/dev/null || echo "0 1 0")
	if ((${#problems[@]})); then
		local IFS=';'
		say "failed:${problems[*]/#/ }"
	fi
	local s n
	for s in "${skips[@]}"; do
		n=${s%% *}
		say "skipped $n: ${s#* } on $SERIES"
	done
	echo "vm-$SERIES: $passed passed, $SUITE_FAILED failed, $skipped skipped"
}
