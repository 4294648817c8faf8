#!/usr/bin/env bash
# The quickstart on a local Azure: no Azure account, nothing downloaded.
#
#   make demo            (builds the binaries, then runs this script)
#
# It starts the local Azure with one NSG whose port 22 is open to the
# Internet, installs the provider through a filesystem mirror so that a plain
# `terraform init` works, reads the NSG with the provider, and proves with the
# local Azure's flow verification what can reach the VM before and after a
# deny rule is written through Azure Resource Manager.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
BIN="${BIN:-$root/bin}"
TERRAFORM="${TERRAFORM:-terraform}"
VERSION="${VERSION:-0.1.0}"

for tool in "$TERRAFORM" curl; do
	command -v "$tool" >/dev/null || { echo "demo: $tool is required but not on PATH" >&2; exit 1; }
done
for bin in terraform-provider-jit azuresim; do
	[ -x "$BIN/$bin" ] || { echo "demo: $BIN/$bin missing: run 'make build' first" >&2; exit 1; }
done

work="$(mktemp -d)"
sim_pid=""
cleanup() {
	if [ -n "$sim_pid" ]; then kill "$sim_pid" 2>/dev/null || true; wait "$sim_pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "Starting the local Azure (Entra ID + Resource Manager over HTTPS)"
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
echo "ARM_METADATA_HOSTNAME=$ARM_METADATA_HOSTNAME (the provider discovers every endpoint from it)"

step "Installing terraform-provider-jit $VERSION into a filesystem mirror"
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
mkdir -p "$work/quickstart"
cp "$here/main.tf" "$work/quickstart/"
tf() { "$TERRAFORM" -chdir="$work/quickstart" "$@"; }
tf init -input=false -no-color | grep -E 'Installing|Installed|successfully' || true

nsg_id="/subscriptions/$ARM_SUBSCRIPTION_ID/resourceGroups/rg-demo/providers/Microsoft.Network/networkSecurityGroups/nsg-web"

can_reach() { # can_reach SOURCE PORT: asks the local Azure's flow verification
	curl -sS --fail --cacert "$SSL_CERT_FILE" -X POST "$AZURESIM_URL/_sim/flow/verify" \
		-H 'Content-Type: application/json' \
		-d "{\"nsgIds\":[\"$nsg_id\"],\"protocol\":\"Tcp\",\"source\":\"$1\",\"destination\":\"10.0.1.4\",\"destinationPort\":$2}" |
		sed -E 's/.*"allowed":(true|false).*"ruleName":"([^"]*)".*/\1 (decided by rule \2)/'
}

step "Reading the NSG with the provider (terraform apply of data sources only)"
tf apply -input=false -auto-approve -no-color -var "nsg_id=$nsg_id" | sed -n '/^Outputs:/,$p'

step "What can reach the VM (10.0.1.4) now?"
echo "203.0.113.7 -> 22/tcp:  $(can_reach 203.0.113.7 22)"
echo "203.0.113.7 -> 443/tcp: $(can_reach 203.0.113.7 443)"

step "Closing port 22 with a deny rule, written through Azure Resource Manager"
token="$(curl -sS --fail --cacert "$SSL_CERT_FILE" -X POST "$AZURESIM_URL/$ARM_TENANT_ID/oauth2/v2.0/token" \
	--data-urlencode grant_type=client_credentials --data-urlencode "client_id=$ARM_CLIENT_ID" \
	--data-urlencode "client_secret=$ARM_CLIENT_SECRET" --data-urlencode "scope=https://management.core.windows.net//.default" |
	sed -E 's/.*"access_token":"([^"]*)".*/\1/')"
curl -sS --fail -o /dev/null --cacert "$SSL_CERT_FILE" -X PUT \
	"$AZURESIM_URL$nsg_id/securityRules/DenySSHInbound?api-version=2025-05-01" \
	-H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
	-d '{"properties":{"priority":200,"direction":"Inbound","access":"Deny","protocol":"Tcp","sourceAddressPrefix":"*","sourcePortRange":"*","destinationAddressPrefix":"*","destinationPortRange":"22","description":"closed by the quickstart"}}'
echo "PUT DenySSHInbound (priority 200) accepted"
echo "203.0.113.7 -> 22/tcp:  $(can_reach 203.0.113.7 22)"
echo "203.0.113.7 -> 443/tcp: $(can_reach 203.0.113.7 443)"

step "The provider sees the change (terraform apply again)"
tf apply -input=false -auto-approve -no-color -var "nsg_id=$nsg_id" | sed -n '/^Outputs:/,$p'

step "Requests the local Azure served"
curl -sS --fail --cacert "$SSL_CERT_FILE" "$AZURESIM_URL/_sim/counters" | tr ',' '\n' | grep -E '"(GET|PUT|POST|DELETE) [a-z-]+"' | tr -d '{}"' | sed 's/^ *requests://; s/^/  /' || true

step "Done: the local Azure stops and the work directory is removed"
