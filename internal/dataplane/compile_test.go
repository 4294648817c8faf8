package dataplane

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jitaccess/terraform-provider-jit/internal/azuresim/nsgrules"
)

var vm = netip.MustParseAddr("10.0.1.4")

func TestCompileNSGOrderAndMatches(t *testing.T) {
	rules := []nsgrules.Rule{
		{Name: "web", Priority: 300, Direction: "Inbound", Access: "Allow", Protocol: "Tcp",
			SourcePrefixes:      []string{"203.0.113.0/24", "203.0.113.7", "198.51.100.0/25", "198.51.100.128/25"},
			DestinationPrefixes: []string{"*"}, SourcePorts: []string{"*"}, DestinationPorts: []string{"443", "440-450", "22"}},
		{Name: "deny-one", Priority: 150, Direction: "Inbound", Access: "Deny", Protocol: "*",
			SourcePrefixes: []string{"203.0.113.11"}, DestinationPrefixes: []string{"10.0.1.4"},
			SourcePorts: []string{"1024-65535"}, DestinationPorts: []string{"*"}},
		{Name: "udp", Priority: 100, Direction: "Inbound", Access: "Allow", Protocol: "Udp",
			SourcePrefixes: []string{"*"}, DestinationPrefixes: []string{"*"}, SourcePorts: []string{"*"}, DestinationPorts: []string{"*"}},
		{Name: "elsewhere", Priority: 110, Direction: "Inbound", Access: "Deny", Protocol: "Tcp",
			SourcePrefixes: []string{"*"}, DestinationPrefixes: []string{"10.0.9.0/24"}, SourcePorts: []string{"*"}, DestinationPorts: []string{"*"}},
		{Name: "asg", Priority: 120, Direction: "Inbound", Access: "Deny", Protocol: "Tcp", SourceASGs: 1,
			DestinationPrefixes: []string{"*"}, SourcePorts: []string{"*"}, DestinationPorts: []string{"*"}},
		{Name: "out", Priority: 130, Direction: "Outbound", Access: "Deny", Protocol: "*",
			SourcePrefixes: []string{"*"}, DestinationPrefixes: []string{"*"}, SourcePorts: []string{"*"}, DestinationPorts: []string{"*"}},
	}
	got := compileNSG(vm, rules, nsgrules.Env{})
	want := []string{
		`ip saddr { 203.0.113.11 } tcp sport { 1024-65535 } reject with tcp reset comment "deny-one 150 Deny"`,
		`ip saddr { 198.51.100.0-198.51.100.255, 203.0.113.0-203.0.113.255 } tcp dport { 22, 440-450 } return comment "web 300 Allow"`,
		`ip saddr { 10.0.0.0-10.255.255.255, 100.64.0.0-100.127.255.255, 168.63.129.16, 172.16.0.0-172.31.255.255, 192.168.0.0-192.168.255.255 } return comment "AllowVnetInBound 65000 Allow"`,
		`ip saddr { 168.63.129.16 } return comment "AllowAzureLoadBalancerInBound 65001 Allow"`,
		`reject with tcp reset comment "DenyAllInBound 65500 Deny"`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("compileNSG =\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestCompileFailsClosedAndEscapes(t *testing.T) {
	text := compile(vm, []pathNSG{{id: `/x/"; flush ruleset; #`, unreadable: true}}, nsgrules.Env{})
	if !strings.Contains(text, "chain nsg0 {\n\t\t# /x/?? flush ruleset? ?\n\t\treject with tcp reset") {
		t.Errorf("unreadable NSG does not fail closed, or its id is not escaped:\n%s", text)
	}
	if strings.Count(text, "flush ruleset") != 1 || strings.Contains(text, `"; flush`) {
		t.Errorf("id leaked into the ruleset:\n%s", text)
	}
	open := compile(vm, nil, nsgrules.Env{})
	if strings.Contains(open, "jump") || !strings.Contains(open, "\t\tct mark set 0x1 accept\n\t}") {
		t.Errorf("no NSG on the path must let everything in, as on Azure:\n%s", open)
	}
}

func TestPortRanges(t *testing.T) {
	for _, tt := range []struct {
		in   []string
		want []portRange
		ok   bool
	}{
		{[]string{"*"}, nil, true},
		{[]string{"22", "*"}, nil, true},
		{[]string{"0-65535"}, nil, true},
		{[]string{"0-100", "101-65535"}, nil, true},
		{[]string{"22", "20-25", "26"}, []portRange{{20, 26}}, true},
		{[]string{"x", "22"}, []portRange{{22, 22}}, true},
		{[]string{"x", "-1", "70000", "5-4", "+22"}, nil, false},
	} {
		got, ok := portRanges(tt.in)
		if ok != tt.ok || !slices.Equal(got, tt.want) {
			t.Errorf("portRanges(%v) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

// TestRemoveStaleNamespaces: a namespace of a process that has ended is
// removed; one of a live process (this one) is kept.
func TestRemoveStaleNamespaces(t *testing.T) {
	if why := Unsupported(); why != "" {
		t.Skip("dataplane: skipped: " + why)
	}
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	stale := namePrefix + strconv.Itoa(cmd.Process.Pid) + "-1-vm"
	live := newBaseName() + "-vm"
	for _, ns := range []string{stale, live} {
		if err := runIP(ctx, nil, "netns", "add", ns); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = runIP(ctx, nil, "netns", "delete", ns) })
	}
	removeStaleNamespaces(ctx)
	if _, err := os.Stat("/var/run/netns/" + stale); !os.IsNotExist(err) {
		t.Errorf("stale namespace %s still there (%v)", stale, err)
	}
	if _, err := os.Stat("/var/run/netns/" + live); err != nil {
		t.Errorf("live namespace %s removed: %v", live, err)
	}
}
