#!/bin/sh
# stream-process.sh ID COMMAND [ARG...]: runs COMMAND and streams its output to the ws-hub channel process:ID,
# line by line (stdout and stderr apart), then its exit code. Needs curl; no jq.
#   HUB      the server, default http://127.0.0.1:8080
#   HUB_KEY  a key from the server's api.keys
set -u
id=$1
shift
hub=${HUB:-http://127.0.0.1:8080}
: "${HUB_KEY:?set HUB_KEY to a key from api.keys}"
tab=$(printf '\t')

# post ACTION JSON: one API request; a failure is reported on stderr and the command goes on.
post() {
    printf '%s' "$2" | curl -sS -f -o /dev/null -X POST "$hub/api/process/$id/$1" \
        -H "Authorization: apikey $HUB_KEY" -H 'Content-Type: application/json' --data-binary @- >&2 || :
}

# json_string TEXT: TEXT as a JSON string; backslashes, quotes and tabs escaped, other control characters dropped.
json_string() {
    s=$(printf '%s' "$1" | tr -d '\000-\010\012-\037' | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e "s/$tab/\\\\t/g")
    printf '"%s"' "$s"
}

# send STREAM: posts each line of standard input as output on STREAM.
send() {
    while IFS= read -r line || [ -n "$line" ]; do
        post output "{\"stream\":\"$1\",\"line\":$(json_string "$line")}"
    done
}

post status '{"state":"running"}'
status_file=$(mktemp)
# The command's stdout goes to fd 3 (the outer pipe), its stderr to the inner pipe.
{ { "$@"; echo $? >"$status_file"; } 2>&1 1>&3 3>&- | send stderr; } 3>&1 | send stdout
code=$(cat "$status_file")
rm -f "$status_file"
if [ "$code" -gt 128 ]; then
    post status "{\"state\":\"failed\",\"code\":$code,\"reason\":\"killed by signal $((code - 128))\"}"
else
    post status "{\"state\":\"exited\",\"code\":$code}"
fi
exit "$code"
