#!/usr/bin/env bash
# One kernel's share of the matrix, run inside its guest (or natively for this machine's
# kernel): the plan's tests and commands one at a time, each with its own timeout.
# Writes into OUT: kernel, features.json, results.tsv (label, result, seconds), logs/, and
# running (the test under way, so that tests/kernels/run can name it if the guest dies).
# A test whose plan line needs a capability `netray features` says is missing is not
# run and is recorded as "lacks:<feature>", which the table shows. Tests already in
# results.tsv are not run again: a second guest resumes where a dead one stopped.
#   guest.sh PLAN OUT NETRAY
set -uo pipefail
plan=$1 out=$2 netray=$3
per_test_timeout=${NETRAY_KTEST_TIMEOUT:-400}

# A virtme-ng guest mounts neither bpffs nor (on older kernels) tracefs.
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
# The guest sees this machine's filesystem read-only: tests write under /var/tmp.
{ touch /var/tmp/.netray-w && rm -f /var/tmp/.netray-w; } 2>/dev/null || mount -t tmpfs tmpfs /var/tmp

mkdir -p "$out/logs"
touch "$out/results.tsv"
uname -r > "$out/kernel"
"$netray" features --json > "$out/features.json" 2> "$out/logs/features.log" ||
    echo '{"features": []}' > "$out/features.json"

lacking() { # the first of a comma list of features this kernel lacks, if any
    local f
    for f in ${1//,/ }; do
        jq -e --arg f "$f" '.features[] | select(.name == $f) | .available' "$out/features.json" >/dev/null ||
            { echo "$f"; return; }
    done
}

while IFS=$'\t' read -r label needs cwd cmd; do
    if awk -F'\t' -v l="$label" '$1 == l { found = 1 } END { exit !found }' "$out/results.tsv"; then continue; fi
    if [ "$needs" != - ] && miss=$(lacking "$needs") && [ -n "$miss" ]; then
        printf '%s\tlacks:%s\t0\n' "$label" "$miss" >> "$out/results.tsv"
        echo "matrix: $label NOT RUN: this kernel lacks $miss" >&2
        continue
    fi
    log=${label//[\/ ]/_}
    echo "$label" > "$out/running"
    sync "$out/running"  # the host reads it if this guest dies
    start=$(date +%s)
    # $cmd is the plan's own words (paths without spaces): split on purpose.
    # shellcheck disable=SC2086
    (cd "$cwd" && NETRAY_BIN=$netray timeout -k 10 "$per_test_timeout" $cmd) > "$out/logs/$log.log" 2>&1
    rc=$?
    case $rc in 0) res=ok ;; 124|137) res=timeout ;; *) res=FAILED ;; esac
    printf '%s\t%s\t%s\n' "$label" "$res" "$(( $(date +%s) - start ))" >> "$out/results.tsv"
    echo "matrix: $label $res ($(( $(date +%s) - start )) s)" >&2
done < "$plan"
rm -f "$out/running"
