package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
)

// parseExports reads `export KEY='value'` lines as a shell would.
func parseExports(t *testing.T, data string) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(data), "\n") {
		kv, ok := strings.CutPrefix(line, "export ")
		k, v, ok2 := strings.Cut(kv, "=")
		if !ok || !ok2 || len(v) < 2 || v[0] != '\'' || v[len(v)-1] != '\'' {
			t.Fatalf("not an export line: %q", line)
		}
		env[k] = strings.ReplaceAll(v[1:len(v)-1], `'\''`, "'")
	}
	return env
}

func TestRunWritesEnvFileAndServes(t *testing.T) {
	dir := t.TempDir()
	envFile := filepath.Join(dir, "azure.env")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-env-file", envFile, "-hostname", "azuresim.local", "-write-latency", "10ms", "-log-format", "json"}, pw, io.Discard)
		pw.Close()
	}()
	ready := bufio.NewScanner(pr)
	if !ready.Scan() || !strings.Contains(ready.Text(), "ready") {
		t.Fatalf("no ready line: %q (run: %v)", ready.Text(), ready.Err())
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()

	data, err := os.ReadFile(envFile)
	if err != nil {
		t.Fatal(err)
	}
	env := parseExports(t, string(data))
	for _, k := range []string{"ARM_METADATA_HOSTNAME", "SSL_CERT_FILE", "ARM_TENANT_ID", "ARM_CLIENT_ID", "ARM_CLIENT_SECRET", "ARM_SUBSCRIPTION_ID"} {
		if env[k] == "" {
			t.Errorf("%s missing from env file:\n%s", k, data)
		}
	}
	if want := filepath.Join(dir, "azuresim-ca.pem"); env["SSL_CERT_FILE"] != want {
		t.Errorf("SSL_CERT_FILE = %q, want %q", env["SSL_CERT_FILE"], want)
	}

	// The server is reachable through the written host name and CA.
	pem, err := os.ReadFile(env["SSL_CERT_FILE"])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("CA file holds no certificate")
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get("https://" + env["ARM_METADATA_HOSTNAME"] + "/metadata/endpoints?api-version=2022-09-01")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct{ ResourceManager string }
	err = json.NewDecoder(resp.Body).Decode(&doc)
	resp.Body.Close()
	if err != nil || doc.ResourceManager != "https://"+env["ARM_METADATA_HOSTNAME"]+"/" {
		t.Errorf("metadata: %+v, %v", doc, err)
	}

	cancel()
	if err := <-done; err != nil {
		t.Errorf("run after cancel: %v", err)
	}
	if _, err := os.Stat(envFile); !os.IsNotExist(err) {
		t.Errorf("env file still present after shutdown: %v", err)
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.pem")
	for _, args := range [][]string{{"-busy-status", "500"}, {"-busy-mode", "wait"}, {"-write-queue", "-1"}, {"-log-format", "xml"}, {"extra"}} {
		if err := run(context.Background(), append([]string{"-ca-file", ca}, args...), io.Discard, io.Discard); err == nil {
			t.Errorf("run %v: no error", args)
		}
	}
}

func TestShellQuote(t *testing.T) {
	if got := shellQuote(`it's`); got != `'it'\''s'` {
		t.Errorf("shellQuote = %s", got)
	}
}

func TestParseSubscriptions(t *testing.T) {
	got, err := parseSubscriptions("3")
	if err != nil || len(got) != 3 || !slices.Equal(got, azuresim.ExtraSubscriptionIDs(3)) {
		t.Errorf(`parseSubscriptions("3") = %v, %v; want ExtraSubscriptionIDs(3)`, got, err)
	}
	got, err = parseSubscriptions(" a-1, b-2 ")
	if err != nil || !slices.Equal(got, []string{"a-1", "b-2"}) {
		t.Errorf("parseSubscriptions(list) = %v, %v", got, err)
	}
	if got, err := parseSubscriptions(""); err != nil || got != nil {
		t.Errorf(`parseSubscriptions("") = %v, %v`, got, err)
	}
	for _, bad := range []string{"-1", "a,,b", "100001"} {
		if _, err := parseSubscriptions(bad); err == nil {
			t.Errorf("parseSubscriptions(%q): no error", bad)
		}
	}
}
