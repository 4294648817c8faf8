package testproc_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
	"github.com/jitaccess/terraform-provider-jit/internal/azuresim/simtest"
	"github.com/jitaccess/terraform-provider-jit/internal/testproc"
)

// The connection helpers speak the local Azure's /_sim/flow endpoints: a
// flow through an NSG that allows it is established and stays alive; one
// it denies is not; an unknown connection is an error.
func TestEstablishFlowAndConnectionState(t *testing.T) {
	nsg := "/subscriptions/" + azuresim.DefaultSubscriptionID + "/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/nsg"
	seed := filepath.Join(t.TempDir(), "seed.json")
	if err := os.WriteFile(seed, []byte(`{"networkSecurityGroups":[{"id":"`+nsg+`","location":"westeurope","properties":{
		"flushConnection":true,"securityRules":[{"name":"ssh","properties":{"priority":200,"direction":"Inbound","access":"Allow",
		"protocol":"Tcp","sourceAddressPrefix":"203.0.113.0/24","sourcePortRange":"*","destinationAddressPrefix":"*",
		"destinationPortRange":"22"}}]}}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := simtest.Start(t, azuresim.Options{SeedFile: seed})
	c := &testproc.ARMClients{HTTP: &http.Client{}, URL: srv.URL()}

	conn, err := c.EstablishFlow([]string{nsg}, "Tcp", "203.0.113.7", "10.0.0.4", 22)
	if err != nil || !conn.Established || conn.ID == "" || !conn.Verdict.Allowed || conn.Verdict.RuleName != "ssh" {
		t.Fatalf("establish an allowed flow: %+v, %v", conn, err)
	}
	st, err := c.ConnectionState(conn.ID)
	if err != nil || !st.Alive || st.ID != conn.ID || !st.CutAt.IsZero() || len(st.NSGIDs) != 1 {
		t.Errorf("state: %+v, %v; want alive", st, err)
	}
	denied, err := c.EstablishFlow([]string{nsg}, "Tcp", "198.51.100.9", "10.0.0.4", 22)
	if err != nil || denied.Established || denied.ID != "" || denied.Verdict.RuleName != "DenyAllInBound" {
		t.Errorf("establish a denied flow: %+v, %v", denied, err)
	}
	if _, err := c.ConnectionState("00000000-0000-4000-8000-000000000000"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("unknown connection: %v, want a 404 error", err)
	}
}

// SetAdminRules and VerifyFlowIn: an admin Deny beats the NSG's allow, and
// the verdict names it.
func TestAdminRulesHelpers(t *testing.T) {
	sub := "/subscriptions/" + azuresim.DefaultSubscriptionID + "/resourceGroups/rg/providers/Microsoft.Network/"
	nsg, vnet := sub+"networkSecurityGroups/nsg", sub+"virtualNetworks/vnet"
	seed := filepath.Join(t.TempDir(), "seed.json")
	if err := os.WriteFile(seed, []byte(`{"networkSecurityGroups":[{"id":"`+nsg+`","location":"westeurope","properties":{
		"securityRules":[{"name":"ssh","properties":{"priority":200,"direction":"Inbound","access":"Allow",
		"protocol":"Tcp","sourceAddressPrefix":"*","sourcePortRange":"*","destinationAddressPrefix":"*",
		"destinationPortRange":"22"}}]}}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := simtest.Start(t, azuresim.Options{SeedFile: seed})
	c := &testproc.ARMClients{HTTP: &http.Client{}, URL: srv.URL()}
	if err := c.SetAdminRules(vnet, json.RawMessage(`{"name":"deny-ssh","kind":"Custom","properties":{"access":"Deny","priority":100,
		"direction":"Inbound","protocol":"Tcp","destinationPortRanges":["22"]}}`)); err != nil {
		t.Fatal(err)
	}
	v, err := c.VerifyFlowIn(vnet, []string{nsg}, "Tcp", "198.51.100.9", "10.0.0.4", 22)
	if err != nil || v.Allowed || v.DecidedBy != "adminRule" || v.RuleName != "admin:deny-ssh" || v.AdminRule == nil || v.AdminRule.Access != "Deny" {
		t.Errorf("with the admin Deny: %+v, %v", v, err)
	}
	if v, err := c.VerifyFlow([]string{nsg}, "Tcp", "198.51.100.9", "10.0.0.4", 22); err != nil || !v.Allowed || v.RuleName != "ssh" {
		t.Errorf("without a virtual network: %+v, %v", v, err)
	}
	if err := c.SetAdminRules(vnet); err != nil {
		t.Fatal(err)
	}
	if v, err := c.VerifyFlowIn(vnet, []string{nsg}, "Tcp", "198.51.100.9", "10.0.0.4", 22); err != nil || !v.Allowed {
		t.Errorf("admin rules removed: %+v, %v", v, err)
	}
	if err := c.SetAdminRules(vnet, json.RawMessage(`{"name":"bad","properties":{"access":"Deny","priority":0,"direction":"Inbound","protocol":"Tcp"}}`)); err == nil {
		t.Error("priority 0 accepted")
	}
}
