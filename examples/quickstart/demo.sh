#!/usr/bin/env bash
# The whole story on a local Azure: no Azure account, nothing downloaded.
#
#   make demo            (builds the binaries, then runs this script)
#
# 1. A VM's NSG has SSH open to the Internet.
# 2. The platform team applies a jit_policy: SSH is closed to everyone.
# 3. A pull request adds a jit_access_grant for Alice; applied, SSH opens for
#    her address only, for one minute.
# 4. jitd, the companion daemon, deletes the rule when the minute is up, and
#    (run as root) Alice's live SSH session, held over real packets through
#    the kernel, is cut at that moment (end_sessions_at_expiry).
# 5. The next plan reports the grant as expired and re-opens nothing.
#
# Reachability is asked of the local Azure's flow verification at each step,
# rather than read off rule shapes.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
BIN="${BIN:-$root/bin}"
TERRAFORM="${TERRAFORM:-terraform}"
VERSION="${VERSION:-0.1.0}"

for tool in "$TERRAFORM" curl; do
	command -v "$tool" >/dev/null || { echo "demo: $tool is required but not on PATH" >&2; exit 1; }
done
for bin in terraform-provider-jit azuresim jitd sessiondemo; do
	[ -x "$BIN/$bin" ] || { echo "demo: $BIN/$bin missing: run 'make build' first" >&2; exit 1; }
done

work="$(mktemp -d)"
sim_pid=""
jitd_pid=""
session_pid=""
cleanup() {
	for pid in $session_pid $jitd_pid $sim_pid; do
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT

bold() { printf '\033[1m%s\033[0m\n' "$*"; }
step() { printf '\n'; bold "==> $*"; }

step "Starting the local Azure (Microsoft Entra ID + Resource Manager over HTTPS)"
"$BIN/azuresim" -listen 127.0.0.1:0 -env-file "$work/azure.env" -seed-file "$here/seed.json" -log-level warn &
sim_pid=$!
for _ in $(seq 1 100); do
	[ -s "$work/azure.env" ] && break
	kill -0 "$sim_pid" 2>/dev/null || { echo "demo: the local Azure exited" >&2; exit 1; }
	sleep 0.1
done
[ -s "$work/azure.env" ] || { echo "demo: the local Azure did not start within 10s" >&2; exit 1; }
# shellcheck disable=SC1091
. "$work/azure.env"
export ARM_USE_CLI=false
echo "ARM_METADATA_HOSTNAME=$ARM_METADATA_HOSTNAME: the provider and jitd discover every endpoint from it"

step "Installing terraform-provider-jit $VERSION through a filesystem mirror (terraform init works offline)"
platform="$(go env GOOS)_$(go env GOARCH)"
plugin_dir="$work/mirror/registry.terraform.io/jitaccess/jit/$VERSION/$platform"
mkdir -p "$plugin_dir"
cp "$BIN/terraform-provider-jit" "$plugin_dir/terraform-provider-jit_v$VERSION"
cat >"$work/terraformrc" <<EOF
provider_installation {
  filesystem_mirror {
    path    = "$work/mirror"
    include = ["registry.terraform.io/jitaccess/jit"]
  }
}
EOF
export TF_CLI_CONFIG_FILE="$work/terraformrc" CHECKPOINT_DISABLE=1 TF_IN_AUTOMATION=1
export JIT_AUDIT_LOG_PATH="$work/audit.jsonl"
repo="$work/access-repo"
mkdir -p "$repo"
cp "$here/main.tf" "$repo/"
tf() { "$TERRAFORM" -chdir="$repo" "$@"; }
nsg_id="/subscriptions/$ARM_SUBSCRIPTION_ID/resourceGroups/rg-demo/providers/Microsoft.Network/networkSecurityGroups/nsg-web"
export TF_VAR_nsg_id="$nsg_id"
tf init -input=false -no-color | grep -E 'Installing|Installed|successfully' || true

reach() { # reach SOURCE PORT: "open (rule)" or "closed (rule)", from flow verification
	local out
	out="$(curl -sS --fail --cacert "$SSL_CERT_FILE" -X POST "$AZURESIM_URL/_sim/flow/verify" \
		-H 'Content-Type: application/json' \
		-d "{\"nsgIds\":[\"$nsg_id\"],\"protocol\":\"Tcp\",\"source\":\"$1\",\"destination\":\"10.0.1.4\",\"destinationPort\":$2}")"
	case "$out" in
	*'"allowed":true'*) printf 'open   (rule %s)' "$(sed -E 's/.*"ruleName":"([^"]*)".*/\1/' <<<"$out")" ;;
	*) printf 'closed (rule %s)' "$(sed -E 's/.*"ruleName":"([^"]*)".*/\1/' <<<"$out")" ;;
	esac
}
show_reach() {
	echo "  alice    203.0.113.7  -> VM:22   $(reach 203.0.113.7 22)"
	echo "  stranger 198.51.100.9 -> VM:22   $(reach 198.51.100.9 22)"
	echo "  stranger 198.51.100.9 -> VM:443  $(reach 198.51.100.9 443)"
}

step "1. Find what to protect: jitd scan lists management ports open to the Internet"
"$BIN/jitd" scan -nsg "$nsg_id" 2>/dev/null | sed 's/^/  /' || echo "  (exit code $?: something is exposed)"
show_reach

step "2. The platform team applies jit_policy.web_ssh"
tf apply -input=false -auto-approve -no-color | sed -n '/^Apply complete/,$p'
show_reach
echo "  jitd scan now:"
"$BIN/jitd" scan -nsg "$nsg_id" 2>/dev/null | sed 's/^/    /' && echo "    (exit code 0: nothing exposed)"

step "   jitd starts watching the NSG (it closes grants at expiry, whoever runs Terraform or not)"
"$BIN/jitd" -nsg "$nsg_id" -audit-log "$work/jitd-audit.jsonl" -log-level warn &
jitd_pid=$!
echo "  jitd running (pid $jitd_pid): full resync every 5m, NSGs with a policy re-read every 30s, a timer at each expiry"

step "   Real packets: Alice's laptop and the VM in network namespaces, the NSG's rules in the kernel (nftables)"
if "$BIN/sessiondemo" -check >"$work/session-check.txt"; then
	"$BIN/sessiondemo" -nsg "$nsg_id" -source 203.0.113.7 -port 22 >"$work/session.log" 2>&1 &
	session_pid=$!
	for _ in $(seq 1 100); do
		[ -s "$work/session.log" ] && break
		sleep 0.1
	done
	echo "  Alice tries to SSH to the VM, again and again, and holds the session once it opens:"
	sed 's/^/    /' "$work/session.log"
else
	echo "  $(cat "$work/session-check.txt")"
	echo "  (run 'sudo make demo' to see Alice's session over real packets; the rest of the demo asks flow verification)"
fi

step "3. A pull request adds requests/alice-ssh.tf; CI plans it"
cp "$here/requests/alice-ssh.tf" "$repo/"
tf plan -input=false -no-color | grep -E '^\s+# |^Plan:|duration|source_address_prefix|requester' || true
step "   Reviewed and merged: CI applies it"
tf apply -input=false -auto-approve -no-color | grep -E '^Apply complete|alice_expires_at' || true
show_reach
expires_at="$(tf output -raw alice_expires_at)"
expires_epoch="$(date -d "$expires_at" +%s)"

step "4. Nobody runs Terraform: jitd closes the grant when its minute is up"
closed=""
# On a terminal the countdown rewrites one line; in a log, one line per 10s.
if [ -t 1 ]; then cr='\r'; else cr=''; fi
while :; do
	now="$(date +%s)"
	left=$((expires_epoch - now))
	state="$(reach 203.0.113.7 22)"
	if [ -n "$cr" ] || [ $((left % 10)) -eq 0 ] || [ "$left" -le 0 ]; then
		if [ "$left" -gt 0 ]; then
			printf "${cr}  waiting for the grant to expire at %s: %3ds left; alice -> VM:22 %s   " "$expires_at" "$left" "${state%% *}"
		else
			printf "${cr}  expired %2ds ago; waiting for jitd to close it; alice -> VM:22 %s            " "$((-left))" "${state%% *}"
		fi
		[ -n "$cr" ] || printf '\n'
	fi
	case "$state" in closed*) if [ "$left" -le 0 ]; then closed="$now"; break; fi ;; esac
	if [ "$left" -lt -60 ]; then echo; echo "demo: jitd did not close the grant within 60s of expiry" >&2; exit 1; fi
	sleep 1
done
printf '\n  closed by jitd about %ds after expiry\n' "$((closed - expires_epoch))"
show_reach
if [ -n "$session_pid" ]; then
	for _ in $(seq 1 50); do
		grep -q 'session CUT' "$work/session.log" && break
		sleep 0.1
	done
	echo "  Alice's SSH session, over real packets (end_sessions_at_expiry = true):"
	sed 's/^/    /' "$work/session.log"
fi
echo "  jitd's audit event:"
grep '"action":"close"' "$work/jitd-audit.jsonl" | head -n1 | sed 's/^/    /'

step "5. The next plan reports the expiry and re-opens nothing"
tf plan -input=false -no-color 2>&1 | grep -E 'Warning:|expired at|No changes|Plan:' | sed 's/^/  /' || true

step "6. The request file is removed and everything destroyed: the NSG is as it was"
rm "$repo/alice-ssh.tf"
tf destroy -input=false -auto-approve -no-color | grep -E '^Destroy complete' || true
show_reach
echo "  provider audit log: $(grep -c . "$JIT_AUDIT_LOG_PATH") events ($(grep -o '"action":"[a-z]*"' "$JIT_AUDIT_LOG_PATH" | sort | uniq -c | tr -s ' ' | tr '\n' ' '))"

step "Done: jitd and the local Azure stop, and the work directory is removed"
