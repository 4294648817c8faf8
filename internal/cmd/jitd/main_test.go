package main

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"--subscription", "s1", "--subscription", "s2", "--resource-group", "rg",
		"--nsg", "/subscriptions/s/resourceGroups/r/providers/Microsoft.Network/networkSecurityGroups/n",
		"--interval", "30s", "--once", "--dry-run", "--no-restore", "--log-level", "debug", "--concurrency", "3"},
		envOf(map[string]string{EnvWebhookURL: "https://hooks.example.com/secret"}))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.subscriptions, listFlag{"s1", "s2"}) || !slices.Equal(o.resourceGroups, listFlag{"rg"}) || len(o.nsgs) != 1 ||
		o.interval != 30*time.Second || !o.once || !o.dryRun || !o.noRestore || o.concurrency != 3 || o.logLevel.String() != "DEBUG" {
		t.Errorf("parsed %+v", o)
	}
	if o.maxLead != jit.MaxCloseLead {
		t.Errorf("--max-close-lead defaults to %s, want %s", o.maxLead, jit.MaxCloseLead)
	}
	if o, err := parseFlags([]string{"--max-close-lead", "0"}, envOf(nil)); err != nil || closeLeadOption(o.maxLead) >= 0 {
		t.Errorf("--max-close-lead 0: %v, option %s; want closing ahead off", err, closeLeadOption(o.maxLead))
	}
	if o.webhookURL != "https://hooks.example.com/secret" {
		t.Errorf("webhook URL = %q, want it from %s", o.webhookURL, EnvWebhookURL)
	}

	for _, args := range [][]string{
		{"--interval", "10ms"},
		{"--concurrency", "0"},
		{"--max-close-lead", "-1s"},
		{"--max-close-lead", "31s"},
		{"--log-level", "loud"},
		{"--subscription", ""},
		{"stray"},
	} {
		if _, err := parseFlags(args, envOf(nil)); err == nil {
			t.Errorf("parseFlags(%q) succeeded", args)
		}
	}
}

func TestUsageDoesNotShowTheWebhookSecret(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"-h"}, envOf(map[string]string{EnvWebhookURL: "https://hooks.example.com/s3cr3t"}), &stdout, &stderr)
	if err != nil || !strings.Contains(stdout.String(), "--webhook-url") {
		t.Fatalf("err = %v, want the usage\n%s", err, stdout.String())
	}
	if strings.Contains(stdout.String()+stderr.String(), "s3cr3t") {
		t.Error("usage text shows the webhook URL from the environment")
	}
}

func TestNewScope(t *testing.T) {
	const nsg = "/subscriptions/s/resourceGroups/r/providers/Microsoft.Network/networkSecurityGroups/n"
	tests := []struct {
		name       string
		o          options
		defaultSub string
		want       string // scope.String(), or the error's substring
		wantErr    bool
	}{
		{name: "default subscription", defaultSub: "sub-0", want: "subscription sub-0"},
		{name: "nothing to watch", wantErr: true, want: "nothing to watch"},
		{name: "resource group in the default subscription", o: options{resourceGroups: listFlag{"rg"}}, defaultSub: "sub-0",
			want: "resource group sub-0/rg"},
		{name: "resource group with its subscription", o: options{resourceGroups: listFlag{"sub-1/rg"}},
			want: "resource group sub-1/rg"},
		{name: "resource group without any subscription", o: options{resourceGroups: listFlag{"rg"}}, wantErr: true,
			want: "names no subscription"},
		{name: "malformed resource group", o: options{resourceGroups: listFlag{"a/b/c"}}, wantErr: true, want: "--resource-group"},
		{name: "nsg", o: options{nsgs: listFlag{nsg}}, defaultSub: "sub-0", want: "nsg " + nsg},
		{name: "not an nsg id", o: options{nsgs: listFlag{"/subscriptions/s/resourceGroups/r"}}, wantErr: true, want: "--nsg"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := newScope(tc.o, tc.defaultSub)
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err = %v, want one containing %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := s.String(); got != tc.want {
				t.Errorf("scope = %q, want %q", got, tc.want)
			}
		})
	}
}

// fakeScopeClient lists fixed NSGs per subscription/resource group.
type fakeScopeClient map[string][]string

func (f fakeScopeClient) ListNSGIDs(_ context.Context, sub, rg string) ([]string, error) {
	ids, ok := f[sub+"/"+rg]
	if !ok {
		return nil, errors.New("forbidden")
	}
	return ids, nil
}

func (f fakeScopeClient) ListRules(context.Context, string) ([]jit.SecurityRule, error) {
	return nil, nil
}

func TestScopeNSGIDsDeduplicatesAndKeepsGoing(t *testing.T) {
	s := &scope{
		client: fakeScopeClient{
			"s1/":   {"/subscriptions/s1/resourceGroups/a/providers/Microsoft.Network/networkSecurityGroups/x"},
			"s1/a":  {"/SUBSCRIPTIONS/s1/resourceGroups/A/providers/Microsoft.Network/networkSecurityGroups/X"},
			"s2/ok": {"/subscriptions/s2/resourceGroups/ok/providers/Microsoft.Network/networkSecurityGroups/y"},
		},
		subscriptions:  []string{"s1"},
		resourceGroups: []resourceGroupRef{{"s1", "a"}, {"s2", "denied"}, {"s2", "ok"}},
	}
	ids, err := s.NSGIDs(context.Background())
	if err == nil || !strings.Contains(err.Error(), "s2/denied") {
		t.Errorf("err = %v, want the failing resource group named", err)
	}
	if len(ids) != 2 {
		t.Errorf("ids = %q, want x once (ids are case-insensitive) and y", ids)
	}
	if err := s.check(context.Background()); err == nil || !strings.Contains(err.Error(), "refusing to start") ||
		!strings.Contains(err.Error(), "--resource-group s2/denied") || !strings.Contains(err.Error(), "networkSecurityGroups/read") {
		t.Errorf("check = %v, want a refusal naming the unreadable scope and the permission", err)
	}
}
