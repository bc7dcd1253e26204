#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ (the SCTP snapshot, gtp table and
# plugin image decoders) and prints, per target, the executions, crashes
# and exec/s; exits non-zero if any target crashed (a panic, an ASan
# report, an OOM or a timeout), naming the reproducer.
#
#   tests/fuzz.sh                 short run: 20 s a target (CI)
#   tests/fuzz.sh --long          long run: 10 M executions a target, at most
#                                 1 hour each
#   tests/fuzz.sh --seconds 60 [--runs N] [TARGET...]
#
# Environment: EPCMIG_FUZZ_SECONDS (short run's seconds a target),
# EPCMIG_FUZZ_LONG=1 (same as --long), EPCMIG_FUZZ_SANITIZER (address,
# the default; none is about twice as fast).
#
# cargo-fuzz needs nightly compiler flags; the machine has only a stable
# toolchain, so they are enabled with RUSTC_BOOTSTRAP=1. cargo-fuzz itself
# is installed from crates.io if missing. The corpora grow in
# fuzz/corpus/<target> (kept between runs, not committed); seeds are
# written fresh from the sample images into fuzz/seeds/<target>.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS_ALL=(sctp_snapshot gtp_table plugin_image)
CARGO_FUZZ_VERSION=0.13.2

seconds=${EPCMIG_FUZZ_SECONDS:-20}
runs=0
[[ ${EPCMIG_FUZZ_LONG:-0} == 1 ]] && { seconds=3600; runs=10000000; }
targets=()
while (($#)); do
	case $1 in
	--long) seconds=3600 runs=10000000 ;;
	--seconds) seconds=$2; shift ;;
	--runs) runs=$2; shift ;;
	-h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	-*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
	*) targets+=("$1") ;;
	esac
	shift
done
((${#targets[@]})) || targets=("${TARGETS_ALL[@]}")

export RUSTC_BOOTSTRAP=1 CARGO_TERM_COLOR=never
if ! cargo fuzz --version >/dev/null 2>&1; then
	echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION from crates.io"
	cargo install --locked --quiet cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi

sanitizer=${EPCMIG_FUZZ_SANITIZER:-address}
echo "fuzz: seeds from the sample images"
cargo run --quiet -p epcmig-tools --example fuzz-seeds -- fuzz/seeds
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
echo "fuzz: building the targets (sanitizer: $sanitizer)"
if ! (cd fuzz && cargo fuzz build --sanitizer "$sanitizer") >"$logs/build.log" 2>&1; then
	tail -n 40 "$logs/build.log" >&2
	echo "fuzz: the targets do not build" >&2
	exit 1
fi
final_stat() { sed -n "s/^stat::$1: *//p" "$2" | tail -n 1; }

passed=0 failed=0 total=0
for t in "${targets[@]}"; do
	mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
	marker="$logs/$t.start"
	touch "$marker"
	limit=(-max_total_time="$seconds")
	((runs > 0)) && limit+=(-runs="$runs")
	start=$(date +%s)
	rc=0
	(cd fuzz && cargo fuzz run --sanitizer "$sanitizer" "$t" "corpus/$t" "seeds/$t" -- \
		"${limit[@]}" -print_final_stats=1 -rss_limit_mb=2048 -timeout=10) \
		>"$logs/$t.log" 2>&1 || rc=$?
	secs=$(($(date +%s) - start))
	execs=$(final_stat number_of_executed_units "$logs/$t.log")
	rate=$(final_stat average_exec_per_sec "$logs/$t.log")
	mapfile -t found < <(find "fuzz/artifacts/$t" -type f -newer "$marker" | sort)
	corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
	printf 'fuzz: %-14s %12s execs  %2d crashes  %8s exec/s  %4d s  corpus %d\n' \
		"$t" "${execs:-?}" "${#found[@]}" "${rate:-?}" "$secs" "$corpus"
	total=$((total + ${execs:-0}))
	if ((rc != 0 || ${#found[@]} > 0)) || [[ -z $execs ]]; then
		failed=$((failed + 1))
		echo "fuzz: $t FAILED (exit $rc):" >&2
		grep -E -A1 -m 8 'panicked at|ERROR: |SUMMARY: |deadly signal|out-of-memory|TIMEOUT|error(\[|:)' \
			"$logs/$t.log" >&2 || grep -v '^#[0-9]' "$logs/$t.log" | tail -n 30 >&2
		for f in "${found[@]}"; do
			echo "fuzz: reproduce: (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run $t ${f#fuzz/})" >&2
		done
	else
		passed=$((passed + 1))
	fi
done
echo "fuzz: $total executions in all"
echo "fuzz: $passed passed, $failed failed"
((failed == 0))
