"""The sandbox side of the shell-driven providers (docker, modal, e2b, daytona).

Every operation is one exec of OPERATIONS in the sandbox:

    sh -c OPERATIONS farline <workspace> <state dir> <operation> <arguments...>

POSIX sh and the tools every image with a shell has (busybox or GNU coreutils, findutils,
tar): no Python, no agent installed in the container. Each operation prints its result on
stdout and exits 0, or says why on stderr and exits with one of the codes below, which the
provider turns into the protocol's exceptions. The exit status is also the last line of
stderr, so the provider asks the engine for it only when the output was cut short.

Processes (`start`) run under SUPERVISOR, a detached shell (its own session, so it outlives
the exec that started it) that keeps everything in `<state dir>/procs/<process id>/`:

    pid          "<supervisor pid> <its start time in clock ticks>": the pair tells a live
                 supervisor from a reused pid (after a container restart, say)
    child        the pid of the command, which leads its own session
    started_at   epoch seconds (the sandbox's clock; whole seconds where `date` has no %N)
    stdin        a FIFO, held open read-write by the supervisor: writers come and go
    output       the combined stdout and stderr, as written (offsets are file offsets)
    ended_at     epoch seconds
    exit_code    written last; 128 + n for a command killed by signal n (137: killed)

`<state dir>/deleted/<process id>` marks a finished process deleted to make room: starting
that id again must not run it twice. A process directory is claimed with `mkdir`, which
only one exec wins, so a retried start attaches instead of starting the command again.

Everything runs as the sandbox's user, so a symlink the sandbox planted can never lead an
operation to anything the sandbox could not reach itself; paths are still checked to stay
in the workspace, as the protocol asks.
"""

from __future__ import annotations

import re

# exit codes of OPERATIONS: apart from the shell's own (1 and 2 for its errors, 126 and up)
PATH_REFUSED = 80
NOT_FOUND = 81
IS_A_DIRECTORY = 82
NOT_A_DIRECTORY = 83
NO_SUCH_PROCESS = 84
PROCESS_DELETED = 85
TOO_MANY_PROCESSES = 86
PROCESS_ENDED = 87
NO_STATE_DIR = 88
STDIN_NOT_READ = 89

# what precedes an operation's exit status at the end of its stderr
STATUS_MARK = "farline-status "
# `read` says the file's size on stderr first: output an engine cut short is read again
SIZE_MARK = "farline-size "

MAX_LIVE_PROCESSES = 64
MAX_KEPT_PROCESSES = 64
# a process directory with no supervisor pid after this long is a start that died
STARTUP_GRACE_S = 5
KILL_TIMEOUT_S = 5
STDIN_WRITE_TIMEOUT_S = 10
# `read_output` reads whole blocks of this size with dd, which seeks to them
READ_BLOCK = 65536
KILLED_EXIT_CODE = 137
# the command could not be started (its directory is missing, say); the reason is in its output
START_FAILED_EXIT_CODE = 126

_COMMON = r"""
set -u
ws=$1 state=$2 op=$3
shift 3
procs=$state/procs
gone=$state/deleted
nl='
'

fail() { printf '%s\n' "$2" >&2; exit "$1"; }
now() {
  t=$(date +%s.%N 2>/dev/null) || t=
  case $t in *N* | "") t=$(date +%s) ;; esac
  printf '%s\n' "$t"
}
# the start time (clock ticks after boot) of process $1: with the pid, it names one process
starttime() {
  line=
  { read -r line < "/proc/$1/stat"; } 2>/dev/null || return 1
  set -- ${line##*) }
  shift 19
  printf '%s\n' "$1"
}
"""

_SUPERVISOR_SCRIPT = (
    _COMMON
    + r"""
# sh supervisor.sh <workspace> <state dir> supervise <procdir> <directory> <tty command line or ""> <argv...>
d=$1 dir=$2 ttycmd=$3
shift 3
cd "$d" || exit 1
publish() { printf '%s\n' "$2" > "$1.tmp" && mv -f "$1.tmp" "$1"; }
ss=
command -v setsid > /dev/null 2>&1 && ss=setsid
[ -p stdin ] || mkfifo -m 600 stdin || exit 1
exec 3<> stdin
publish started_at "$(now)"
if [ -n "$ttycmd" ] && script --version 2>&1 | grep -q util-linux; then
  # util-linux's script: a pseudo-terminal as stdin, stdout and stderr, the exit code kept
  (
    cd "$dir" 2> /dev/null || { printf 'farline: no such directory: %s\n' "$dir"; exit @START_FAILED@; }
    unset OLDPWD SHLVL
    exec $ss script -qfec "$ttycmd" /dev/null
  ) <&3 > output 2>&1 3<&- &
else
  (
    cd "$dir" 2> /dev/null || { printf 'farline: no such directory: %s\n' "$dir"; exit @START_FAILED@; }
    unset OLDPWD SHLVL
    exec $ss "$@"
  ) <&3 > output 2>&1 3<&- &
fi
child=$!
publish child "$child"
publish pid "$$ $(starttime $$)"
wait "$child"
code=$?
exec 3<&-
publish ended_at "$(now)"
publish exit_code "$code"
"""
)

_OPERATIONS_SCRIPT = (
    _COMMON
    + r"""
# The status, last on stderr. An operation given input reads all of it first: an exec that
# ends with its stdin unread may lose its output (podman resets the attach).
trap 'status=$?; [ -z "${input:-}" ] || cat > /dev/null; printf "\n@STATUS@%s\n" "$status" >&2' EXIT
inside() { case $1 in "$ws" | "$ws"/*) return 0 ;; esac; return 1; }
# r := workspace path $1 (relative) with every symlink resolved, as the sandbox sees it
resolve() {
  r=$(readlink -f "$ws${1:+/$1}" 2> /dev/null) ||
    fail @NOT_FOUND@ "no such file or directory in the workspace: $1"
  inside "$r" || fail @PATH_REFUSED@ "'$1' resolves to '$r', outside the workspace; not following it"
}
# d := the directory of process $1
procdir() {
  d=$procs/$1
  [ -d "$d" ] && return 0
  [ -e "$gone/$1" ] && fail @PROCESS_DELETED@ "deleted"
  fail @NO_SUCH_PROCESS@ "no process '$1' in this sandbox"
}
alive() {
  [ -e "$1/pid" ] || return 1
  pid= tick=
  read -r pid tick < "$1/pid" || return 1
  [ -n "$pid" ] && [ "$(starttime "$pid")" = "$tick" ]
}
young() {
  born=$(stat -c %Y "$1" 2> /dev/null) || return 1
  [ $(($(date +%s) - born)) -lt @STARTUP_GRACE_S@ ]
}
# status := running, exited or lost; code := the exit code, if any
status() {
  code= status=running
  [ -e "$1/exit_code" ] && read -r code < "$1/exit_code"
  [ -n "$code" ] && { status=exited; return 0; }
  if [ -e "$1/pid" ]; then alive "$1" && return 0; else young "$1" && return 0; fi
  # it may have ended while we looked
  [ -e "$1/exit_code" ] && read -r code < "$1/exit_code"
  if [ -n "$code" ]; then status=exited; else status=lost; fi
}
# the state line, then the whole output if the process has ended and it is at most $2 bytes
report() {
  status "$1"
  size=$(stat -c %s "$1/output" 2> /dev/null) || size=0
  started=- ended=-
  [ -e "$1/started_at" ] && read -r started < "$1/started_at"
  [ "$status" != running ] && [ -e "$1/ended_at" ] && read -r ended < "$1/ended_at"
  printf 'farline-state %s %s %s %s %s\n' "$status" "${code:--}" "$size" "$started" "$ended"
  if [ "$status" != running ] && [ "$size" -gt 0 ] && [ "$size" -le "$2" ]; then
    cat "$1/output"
  fi
  return 0
}
# make room for one more process: refuse past the live limit, delete the oldest finished ones
room() {
  live=0 kept=0
  for p in "$procs"/*/; do
    p=${p%/}
    [ "$p" = "$1" ] || [ ! -d "$p" ] && continue
    kept=$((kept + 1))
    status "$p"
    [ "$status" = running ] && live=$((live + 1))
  done
  if [ "$live" -ge @MAX_LIVE@ ]; then
    rmdir "$1"
    fail @TOO_MANY_PROCESSES@ "the sandbox already runs $live processes, the most it allows\
 (@MAX_LIVE@): wait for one to end or kill one, then start this one again"
  fi
  excess=$((kept + 1 - @MAX_KEPT@))
  [ "$excess" -gt 0 ] || return 0
  for p in "$procs"/*/; do
    p=${p%/}
    [ "$p" = "$1" ] || [ ! -d "$p" ] && continue
    status "$p"
    [ "$status" = running ] && continue
    t=0
    [ -e "$p/ended_at" ] && read -r t < "$p/ended_at"
    printf '%s %s\n' "$t" "${p##*/}"
  done | sort | head -n "$excess" | while read -r t id; do
    : > "$gone/$id"
    rm -rf "${procs:?}/$id"
  done
}
# SIGKILL the command $1 (it leads its own session), its session and all its descendants:
# each is stopped when found, so that none forks or dies (its children would be orphaned,
# out of reach) before all are found, then all are killed
killtree() {
  sid=$1 victims=" $1 " more=1
  kill -STOP "$1" 2> /dev/null
  while [ "$more" = 1 ]; do
    more=0
    for s in /proc/[0-9]*/stat; do
      pid=${s#/proc/}
      pid=${pid%/stat}
      case $victims in *" $pid "*) continue ;; esac
      line=
      { read -r line < "$s"; } 2> /dev/null || continue
      set -- ${line##*) }
      [ "$4" = "$sid" ] || case $victims in *" $2 "*) ;; *) continue ;; esac
      kill -STOP "$pid" 2> /dev/null
      victims="$victims$pid " more=1
    done
  done
  kill -9 $victims 2> /dev/null
}
# one listing line per path under the current directory (stat: raw mode in hex, inode,
# size, mtime, ctime, name), a NUL, then "name NUL target NUL" per symlink; paths with a
# newline are left out
listing() {
  find . -xdev -mindepth 1 "$@" ! -path "*$nl*" -exec stat -c '%f/%i/%s/%y/%z/%n' {} + 2> /dev/null
  printf '\0'
  find . -xdev -mindepth 1 "$@" -type l ! -path "*$nl*" \
    -exec sh -c 'for f do printf "%s\0%s\0" "$f" "$(readlink "$f")"; done' sh {} + 2> /dev/null
  return 0
}

case $op in
setup)
  # as root: the workspace and the state dir, owned by the sandbox's user ($1, may be empty)
  mkdir -p "$ws" "$procs" "$gone" || exit 1
  if [ -n "$1" ]; then chown "$1" "$ws" "$state" "$procs" "$gone" || exit 1; fi
  ;;
start)
  # start <supervisor> <id> <workdir> <tty command line> <wait steps of 10 ms> <inline bytes> <argv...>
  sup=$1 id=$2 wd=$3 ttycmd=$4 steps=$5 inline=$6
  shift 6
  { mkdir -p "$procs" "$gone" && [ -w "$procs" ] && [ -w "$gone" ]; } 2> /dev/null ||
    fail @NO_STATE_DIR@ "no state dir $state"
  d=$procs/$id
  [ -e "$gone/$id" ] && fail @PROCESS_DELETED@ "deleted"
  if mkdir "$d" 2> /dev/null; then
    room "$d"
    ss=
    command -v setsid > /dev/null 2>&1 && ss=setsid
    # from a file, so that `ps` in the sandbox shows a short command line
    printf '%s' "$sup" > "$d/supervisor.sh"
    $ss sh "$d/supervisor.sh" "$ws" "$state" supervise "$d" "$ws${wd:+/$wd}" "$ttycmd" "$@" \
      < /dev/null > /dev/null 2>> "$d/supervisor.log" &
    i=0
    while [ ! -e "$d/pid" ] && [ ! -e "$d/exit_code" ]; do
      i=$((i + 1))
      [ "$i" -gt 3000 ] && fail 1 "the supervisor of '$id' did not start: $(tail -c 1000 "$d/supervisor.log")"
      sleep 0.005
    done
    printf 'started\n'
  else
    printf 'attached\n'
  fi
  # a command that ends at once comes back with its output in this same round trip
  i=0
  while [ "$i" -lt "$steps" ] && [ ! -e "$d/exit_code" ]; do
    i=$((i + 1))
    sleep 0.01
  done
  report "$d" "$inline"
  ;;
state)
  procdir "$1"
  report "$d" "$2"
  ;;
output)
  # output <id> <offset> <max bytes>: whole blocks from the one that holds the offset
  procdir "$1"
  [ -e "$d/output" ] || exit 0
  blocks=$((($2 % @BLOCK@ + $3 + @BLOCK@ - 1) / @BLOCK@))
  dd if="$d/output" bs=@BLOCK@ skip=$(($2 / @BLOCK@)) count="$blocks" 2> /dev/null
  ;;
stdin)
  input=1
  procdir "$1"
  status "$d"
  [ "$status" = running ] || fail @PROCESS_ENDED@ "${code:-lost}"
  # opened under the timeout: with the supervisor gone, opening the FIFO would block
  timeout @STDIN_TIMEOUT@ sh -c 'exec cat > "$1"' sh "$d/stdin" || fail @STDIN_NOT_READ@ "not reading"
  ;;
kill)
  procdir "$1"
  status "$d"
  [ "$status" = running ] || exit 0
  i=0
  while [ ! -e "$d/child" ] && [ ! -e "$d/exit_code" ]; do
    i=$((i + 1))
    [ "$i" -gt $((@KILL_TIMEOUT@ * 100)) ] && fail 1 "process '$1' is still starting; try again"
    sleep 0.01
  done
  [ -e "$d/child" ] && read -r child < "$d/child" && killtree "$child"
  i=0
  while [ ! -e "$d/exit_code" ] && [ "$i" -lt $((@KILL_TIMEOUT@ * 100)) ]; do
    i=$((i + 1))
    sleep 0.01
  done
  status "$d"
  if [ "$status" = lost ] || [ "$status" = running ]; then
    printf '%s\n' "$(now)" > "$d/ended_at"
    printf '@KILLED@\n' > "$d/exit_code"
  fi
  ;;
read)
  resolve "$1"
  [ -e "$r" ] || fail @NOT_FOUND@ "no such file or directory in the workspace: $1"
  [ -d "$r" ] && fail @IS_A_DIRECTORY@ "is a directory: $1"
  [ -f "$r" ] || fail @PATH_REFUSED@ "'$1' is not a regular file"
  # its size, so that the worker can tell a whole file from output an engine cut short
  printf '@SIZE@%s\n' "$(stat -c %s "$r")" >&2
  cat "$r"
  ;;
write)
  input=1
  # write <parent> <name> <mode>, the content on stdin; the parents are made as needed
  parent=$ws${1:+/$1}
  a=$parent
  while [ ! -e "$a" ] && [ ! -L "$a" ]; do a=${a%/*}; done
  ra=$(readlink -f "$a" 2> /dev/null) || fail @NOT_FOUND@ "no such file or directory in the workspace: $1"
  inside "$ra" || fail @PATH_REFUSED@ "'$1' leaves the workspace through a symlink; not following it"
  [ -d "$ra" ] || fail @NOT_A_DIRECTORY@ "not a directory in the workspace: $1"
  mkdir -p "$parent" 2> /dev/null || fail @NOT_A_DIRECTORY@ "not a directory in the workspace: $1"
  resolve "${1:+$1/}$2"
  [ -d "$r" ] && fail @IS_A_DIRECTORY@ "'${1:+$1/}$2' is a directory in the workspace; not replacing it"
  tmp=${r%/*}/.farline-write-$$
  cat > "$tmp" && chmod "$3" "$tmp" && mv -f "$tmp" "$r" || { rm -f "$tmp"; exit 1; }
  ;;
delete)
  # delete <parent> <name>: a file or a symlink (never what it points to)
  resolve "$1"
  [ -d "$r" ] || fail @NOT_A_DIRECTORY@ "not a directory in the workspace: $1"
  t=$r/$2
  [ -e "$t" ] || [ -L "$t" ] || fail @NOT_FOUND@ "no such file or directory in the workspace: ${1:+$1/}$2"
  [ -d "$t" ] && [ ! -L "$t" ] &&
    fail @IS_A_DIRECTORY@ "'${1:+$1/}$2' is a directory in the workspace; not deleting it"
  rm -f "$t"
  ;;
list)
  resolve "$1"
  [ -e "$r" ] || fail @NOT_FOUND@ "no such file or directory in the workspace: $1"
  [ -d "$r" ] || fail @NOT_A_DIRECTORY@ "not a directory in the workspace: $1"
  cd "$r" && listing -maxdepth 1
  ;;
scan)
  cd "$ws" && listing
  ;;
export)
  # export <path>...: a tar of them on stdout; links inside are kept as links
  n=$#
  for p do
    case $p in */*) resolve "${p%/*}" ;; *) ;; esac
    [ -z "$p" ] || [ -e "$ws/$p" ] || [ -L "$ws/$p" ] ||
      fail @NOT_FOUND@ "no such file or directory in the workspace: $p"
    set -- "$@" "./${p:-.}"
  done
  shift "$n"
  cd "$ws" && tar -cf - "$@"
  ;;
import)
  input=1
  # import <count> <parent>... <mode> <count> <dir>... ...: the archive on stdin. Nothing is
  # written when a parent of a member is a symlink (the sandbox may have planted one) or no
  # directory. The archive's directories that exist are made writable while it goes in, then
  # each gets its mode (busybox's tar leaves an existing directory's mode as it was).
  cd "$ws" || exit 1
  n=$1
  shift
  while [ "$n" -gt 0 ]; do
    [ -L "$1" ] && fail @PATH_REFUSED@ "'${1#./}' is a symlink in the workspace; not writing through it"
    [ -e "$1" ] && [ ! -d "$1" ] && fail @NOT_A_DIRECTORY@ "not a directory in the workspace: ${1#./}"
    n=$((n - 1))
    shift
  done
  i=1 list=
  while [ "$i" -le $# ]; do
    eval "count=\${$((i + 1))}"
    j=$((i + 2))
    while [ "$j" -lt $((i + 2 + count)) ]; do
      eval "p=\${$j}"
      [ -d "$p" ] && [ ! -L "$p" ] && list="$list \"\${$j}\""
      j=$((j + 1))
    done
    i=$j
  done
  [ -z "$list" ] || eval "chmod u+rwx $list" || exit 1
  umask 0 && tar -xf - || exit 1
  i=1
  while [ "$i" -le $# ]; do
    eval "mode=\${$i} count=\${$((i + 1))}"
    list= j=$((i + 2))
    while [ "$j" -lt $((i + 2 + count)) ]; do
      list="$list \"\${$j}\""
      j=$((j + 1))
    done
    eval "chmod $mode $list" || exit 1
    i=$j
  done
  ;;
*)
  fail 1 "unknown operation $op"
  ;;
esac
"""
)


def _filled(script: str) -> str:
    """The script with its @NAME@ placeholders replaced by this module's constants."""
    values = {
        "PATH_REFUSED": PATH_REFUSED,
        "NOT_FOUND": NOT_FOUND,
        "IS_A_DIRECTORY": IS_A_DIRECTORY,
        "NOT_A_DIRECTORY": NOT_A_DIRECTORY,
        "NO_SUCH_PROCESS": NO_SUCH_PROCESS,
        "PROCESS_DELETED": PROCESS_DELETED,
        "TOO_MANY_PROCESSES": TOO_MANY_PROCESSES,
        "PROCESS_ENDED": PROCESS_ENDED,
        "NO_STATE_DIR": NO_STATE_DIR,
        "STDIN_NOT_READ": STDIN_NOT_READ,
        "STATUS": STATUS_MARK,
        "SIZE": SIZE_MARK,
        "MAX_LIVE": MAX_LIVE_PROCESSES,
        "MAX_KEPT": MAX_KEPT_PROCESSES,
        "STARTUP_GRACE_S": STARTUP_GRACE_S,
        "KILL_TIMEOUT": KILL_TIMEOUT_S,
        "STDIN_TIMEOUT": STDIN_WRITE_TIMEOUT_S,
        "BLOCK": READ_BLOCK,
        "KILLED": KILLED_EXIT_CODE,
        "START_FAILED": START_FAILED_EXIT_CODE,
    }
    for name, value in values.items():
        script = script.replace(f"@{name}@", str(value))
    left = re.findall(r"@[A-Z_]+@", script)
    if left:
        raise RuntimeError(f"placeholders without a value in a sandbox shell script: {left}")
    return script


SUPERVISOR = _filled(_SUPERVISOR_SCRIPT)
OPERATIONS = _filled(_OPERATIONS_SCRIPT)
