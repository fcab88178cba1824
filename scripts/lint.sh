#!/usr/bin/env bash
# Runs the project's style tools: clang-format (config .clang-format) over the C sources in
# src/, tests/ and bench/, and clang-tidy (config .clang-tidy) over src/**/*.c using the
# compile_commands.json of a release configure in build/lint.
#
#   ./scripts/lint.sh               # both; exits non-zero if either reports anything
#   ./scripts/lint.sh --format-only # clang-format check only
#   ./scripts/lint.sh --tidy-only   # clang-tidy only
#   ./scripts/lint.sh --fix         # apply clang-format in place (then run clang-tidy)
#
# Environment: CLANG_FORMAT, CLANG_TIDY (tool paths), LINT_JOBS (parallel clang-tidy, default 2).
set -uo pipefail
cd "$(dirname "$0")/.."

do_format=1
do_tidy=1
fix=0
for arg in "$@"; do
  case "$arg" in
    --format-only) do_tidy=0 ;;
    --tidy-only) do_format=0 ;;
    --fix) fix=1 ;;
    -h | --help)
      sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "lint.sh: unknown option '$arg' (use --format-only, --tidy-only, --fix)" >&2
      exit 2
      ;;
  esac
done
if [ "$do_format" = 0 ] && [ "$do_tidy" = 0 ]; then
  echo "lint.sh: --format-only and --tidy-only together leave nothing to run" >&2
  exit 2
fi

CLANG_FORMAT=${CLANG_FORMAT:-clang-format}
CLANG_TIDY=${CLANG_TIDY:-clang-tidy}
JOBS=${LINT_JOBS:-2}
status=0

if [ "$do_format" = 1 ]; then
  command -v "$CLANG_FORMAT" >/dev/null || { echo "lint.sh: $CLANG_FORMAT not found (scripts/setup.sh)" >&2; exit 2; }
  mapfile -t cfiles < <(git ls-files -- 'src/*.c' 'src/*.h' 'tests/*.c' 'tests/*.h' 'bench/*.c' 'bench/*.h' | sort)
  if [ "$fix" = 1 ]; then
    printf '%s\0' "${cfiles[@]}" | xargs -0 -n 50 "$CLANG_FORMAT" -i --style=file
    echo "clang-format: formatted ${#cfiles[@]} files in place"
  else
    bad=()
    for f in "${cfiles[@]}"; do
      if ! "$CLANG_FORMAT" --dry-run --Werror --style=file "$f" >/dev/null 2>&1; then
        bad+=("$f")
      fi
    done
    if [ "${#bad[@]}" -gt 0 ]; then
      echo "clang-format: ${#bad[@]} of ${#cfiles[@]} files deviate (./scripts/lint.sh --fix to apply):"
      printf '  %s\n' "${bad[@]}"
      status=1
    else
      echo "clang-format: ${#cfiles[@]} files clean"
    fi
  fi
fi

if [ "$do_tidy" = 1 ]; then
  command -v "$CLANG_TIDY" >/dev/null || { echo "lint.sh: $CLANG_TIDY not found (scripts/setup.sh)" >&2; exit 2; }
  mkdir -p build
  if ! cmake -S . -B build/lint -DCMAKE_BUILD_TYPE=Release -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >build/lint.configure.log 2>&1; then
    echo "lint.sh: cmake configure of build/lint failed (see build/lint.configure.log)" >&2
    exit 2
  fi
  mapfile -t tfiles < <(git ls-files -- 'src/*.c' | sort)
  log=build/lint/clang-tidy.log
  # One output file per source file, so the parallel runs cannot interleave their lines;
  # plain xargs rather than run-clang-tidy keeps the output to the diagnostics themselves.
  rm -rf build/lint/tidy && mkdir -p build/lint/tidy
  printf '%s\0' "${tfiles[@]}" |
    xargs -0 -n 1 -P "$JOBS" sh -c \
      '"$0" -p build/lint --quiet "$1" >"build/lint/tidy/$(echo "$1" | tr / _).log" 2>/dev/null' \
      "$CLANG_TIDY"
  cat build/lint/tidy/*.log >"$log"
  # A header's diagnostic is reported once per file that includes it: count each once.
  pat='^[^ ].*:[0-9]+:[0-9]+: (warning|error):'
  findings=$(grep -E "$pat" "$log" | sed "s|^$PWD/||" | sort -u)
  nwarn=$(printf '%s' "$findings" | grep -c . || true)
  if [ "$nwarn" -gt 0 ]; then
    nfiles=$(printf '%s\n' "$findings" | cut -d: -f1 | sort -u | wc -l)
    echo "clang-tidy: $nwarn findings in $nfiles of ${#tfiles[@]} files checked (full output: $log)"
    printf '%s\n' "$findings"
    echo "by check:"
    printf '%s\n' "$findings" | grep -oE '\[[A-Za-z0-9._,-]+\]$' | sort | uniq -c | sort -rn
    echo "by file:"
    printf '%s\n' "$findings" | cut -d: -f1 | sort | uniq -c | sort -rn
    status=1
  else
    echo "clang-tidy: ${#tfiles[@]} files clean"
  fi
fi

exit "$status"
