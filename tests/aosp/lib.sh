# shellcheck shell=bash
# Helpers shared by tests/aosp/check and tests/aosp/dumpapi. Sourced, not executed.
#
# Debian's `aidl` is the Android 10 compiler: it knows --structured, --dumpapi and --checkapi but
# not @VintfStability (added in Android 11), and it rejects the file outright when it sees it.
# Every call therefore goes through a copy with that one annotation removed; the checks that
# care about the annotation (every dumped type must keep it) look at the real files.

# Name of the aidl_interface module, and so of the aidl_api/<name>/ directory.
AIDL_MODULE=vendor.dmabufd

# aidl_strip_vintf SRC_DIR DST_DIR: copies the .aidl tree, dropping @VintfStability.
aidl_strip_vintf() {
    local src=$1 dst=$2
    mkdir -p "$dst"
    (cd "$src" && find . -name '*.aidl' -print0) | while IFS= read -r -d '' f; do
        mkdir -p "$dst/$(dirname "$f")"
        sed -E 's/@VintfStability[[:space:]]*//' "$src/$f" >"$dst/$f"
    done
}

# aidl_api_hash DIR VERSION_TAG: the .hash of a frozen dump, as AOSP's build computes it: sha1 of
# the `sha1sum` listing of every .aidl file (relative paths, C-locale byte order) followed by a
# line with VERSION_TAG. The tag is the previous version number, or the literal
# `latest-version` when freezing version 1 (AOSP's versionForHashGen).
aidl_api_hash() {
    local dir=$1 tag=$2
    (
        cd "$dir" || exit 1
        find ./ -name '*.aidl' -print0 | LC_ALL=C sort -z | xargs -0 sha1sum
        echo "$tag"
    ) | sha1sum | cut -d' ' -f1
}

# aidl_hash_tag VERSION: the VERSION_TAG that aidl_api_hash needs for a frozen VERSION.
aidl_hash_tag() {
    if [ "$1" -gt 1 ]; then echo $(($1 - 1)); else echo latest-version; fi
}

# aidl_dumpapi SRC_ROOT OUT_DIR: writes an API dump of SRC_ROOT's .aidl files in the AOSP layout
# (OUT_DIR/vendor/dmabufd/X.aidl): the source's licence comment, a do-not-edit note, then the
# declarations as `aidl --dumpapi` prints them, with @VintfStability put back on every type
# whose source has it. Doc comments are dropped, as AOSP's dumps drop them.
aidl_dumpapi() {
    local src=$1 out=$2 tmp
    tmp=$(mktemp -d) || return 1
    aidl_strip_vintf "$src" "$tmp/src"
    (cd "$tmp/src" && find . -name '*.aidl' -print0 | LC_ALL=C sort -z | xargs -0 \
        aidl --dumpapi --structured -I. --out="$tmp/dump") || { rm -rf "$tmp"; return 1; }
    mkdir -p "$out"
    (cd "$src" && find . -name '*.aidl' -print0) | while IFS= read -r -d '' f; do
        mkdir -p "$out/$(dirname "$f")"
        {
            # The licence is the file's leading /* ... */ block.
            awk 'NR == 1 && !/^\/\*/ { exit } { print } /\*\// { exit }' "$src/$f"
            echo '// API snapshot of the vendor.dmabufd AIDL interface, generated; do not edit.'
            echo '// Regenerate: `m vendor.dmabufd-update-api` in AOSP, or tests/aosp/dumpapi.'
            echo
            if grep -q '@VintfStability' "$src/$f"; then
                sed -E '/^(parcelable|interface|union|enum) /i @VintfStability' "$tmp/dump/$f"
            else
                cat "$tmp/dump/$f"
            fi
        } >"$out/$f"
    done
    rm -rf "$tmp"
}
