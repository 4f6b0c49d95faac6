# The command of a swarm task, run under this watcher: what tells the
# launcher on the manager that the kernel killed a process of the task for
# memory, from inside the task (the swarm says only "exit 137", and a worker
# killed while the task lives on not even that; the node's engine is not
# asked). Handed over as a swarm config and run by the image's /bin/sh
# (runtime.swarm_oom).
#
#   sh oom_watch.sh ARGV...
#
# It starts ARGV as its child (with SIGINT and SIGQUIT not ignored, as they
# are for a background job, where the image's env has --default-signal:
# coreutils 8.31 on), forwards the signals the task's init hands it,
# reads the container's own memory cgroup's OOM kill count every 2 s and,
# when it grew, prints `dotcloud-oom-kill ID N` to stderr (ID: this task's,
# N: its kills so far); at the child's end it reads it once more (the line
# then ends with ` exit` when the count grew since the last) and exits with
# the child's status. A command the image lacks exits 127 with one line.
id=$(cat /proc/sys/kernel/random/uuid 2>/dev/null || echo "$$-$(date +%s)")

oom_kills() {
    for f in /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control; do
        if [ -r "$f" ]; then
            while read -r key value; do
                if [ "$key" = oom_kill ]; then
                    echo "$value"
                    return
                fi
            done <"$f"
        fi
    done
    echo 0
}

reported=$(oom_kills)
report() {
    now=$(oom_kills)
    if [ "$now" -gt "$reported" ]; then
        reported=$now
        echo "dotcloud-oom-kill $id $now$1" >&2
    fi
}

if [ $# -eq 0 ]; then
    echo "[swarm] no command to run" >&2
    exit 127
fi
if ! command -v "$1" >/dev/null 2>&1; then
    echo "[swarm] $1: command not found in the image" >&2
    exit 127
fi

# Why ALRM from a ticker, not sleep in this loop: `wait` returns at once
# when the child ends or a signal comes, so stopping takes no longer.
if env --default-signal=INT,QUIT true 2>/dev/null; then
    env --default-signal=INT,QUIT "$@" &
else
    "$@" &
fi
child=$!
for sig in TERM INT HUP QUIT USR1 USR2; do
    trap "kill -$sig $child 2>/dev/null" "$sig"
done
trap report ALRM
( trap - TERM; while sleep 2; do kill -ALRM $$ 2>/dev/null || exit 0; done ) </dev/null >/dev/null 2>&1 &
ticker=$!
while :; do
    wait "$child" 2>/dev/null      # not "Killed": the app's log is its own
    status=$?
    kill -0 "$child" 2>/dev/null || break
done
kill "$ticker" 2>/dev/null
report " exit"
exit "$status"
