# Sourced by scripts/task1_*.sh: trains one workdir per entry, in the listed order, at most $JOBS
# at once across every script that runs with the same $SLOTS folder (one lock file per slot), and
# skips a workdir that has a report, so the scripts resume. Entry: "NAME CONFIG [OVERRIDES...]".
# DRY_RUN=1: print the command of each run that would start instead of running it.
RUNS=${RUNS:?set RUNS}
PY=${PY:-python}
JOBS=${JOBS:-1}
SLOTS=${SLOTS:-/tmp/minijax_task1_slots}
mkdir -p "$RUNS" "$SLOTS"

_take_slot() {  # Opens fd $SLOT_FD on a free slot's lock file, holding its lock.
  local i
  while true; do
    for ((i = 1; i <= JOBS; i++)); do
      exec {SLOT_FD}>"$SLOTS/slot$i.lock"
      flock -n "$SLOT_FD" && return 0
      exec {SLOT_FD}>&-
    done
    sleep 5
  done
}

_train() {
  local name=$1 config=$2 start=$SECONDS
  shift 2
  echo "=== $name: $config $*"
  local rc=0  # "|| rc=$?": under the callers' set -e a failed run would end the job unreported.
  "$PY" -m minijax.main --config="$config" --workdir="$RUNS/$name" "$@" >"$RUNS/$name.log" 2>&1 \
    || rc=$?
  echo "=== $name: rc $rc, $((SECONDS - start)) s" | tee -a "$RUNS/$name.log"
  return $rc
}

# train_all ENTRY...: every entry not done yet (and named in $ONLY, when set), then waits. The
# names of runs that failed go to TRAIN_FAILED; the tables are still made of the finished ones,
# and report_failures at the end of a script makes it exit non-zero.
TRAIN_FAILED=()
train_all() {
  local entry name config extra i
  local pids=() names=()
  for entry in "$@"; do
    read -r name config extra <<<"$entry"
    [[ -n "${ONLY_TABLE:-}" || -f "$RUNS/$name/report/results.json" ]] && continue
    [[ -n "${ONLY:-}" && " $ONLY " != *" $name "* ]] && continue
    if [[ -n "${DRY_RUN:-}" ]]; then  # List what would run; train nothing.
      echo "$PY -m minijax.main --config=$config --workdir=$RUNS/$name ${COMMON[*]} ${extra:-}"
      continue
    fi
    _take_slot
    # The job inherits the locked fd and holds the slot until it ends; this shell lets go of it.
    # shellcheck disable=SC2086  # $extra: zero or more overrides.
    _train "$name" "$config" "${COMMON[@]}" ${extra:-} &
    pids+=($!) names+=("$name")
    exec {SLOT_FD}>&-
  done
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || TRAIN_FAILED+=("${names[$i]}")
  done
}

# report_failures: one line naming the failed runs and their logs, and status 1, if any failed.
report_failures() {
  (( ${#TRAIN_FAILED[@]} == 0 )) && return 0
  echo "failed runs (not in the tables; logs: $RUNS/NAME.log): ${TRAIN_FAILED[*]}" >&2
  return 1
}

# finished NAME...: the comma-separated workdirs of the names that have a report.
finished() {
  local name list=()
  for name in "$@"; do
    [[ -f "$RUNS/$name/report/results.json" ]] && list+=("$RUNS/$name")
  done
  (IFS=,; echo "${list[*]}")
}
