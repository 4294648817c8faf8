package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// myIPEndpoint is a local what-is-my-IP endpoint answering body.
func myIPEndpoint(t *testing.T, status int, body string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func requestAuto(t *testing.T, env requestEnv, extra ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	args := append([]string{"--policy", "web@" + testNSG, "--port", "22", "--source", "auto", "--for", "1h", "--why", "x",
		"--requester", "a@example.com"}, extra...)
	err = env.run(context.Background(), args, &out, &errOut, noAzure(t))
	return out.String(), errOut.String(), err
}

func TestRequestSourceAuto(t *testing.T) {
	url := myIPEndpoint(t, http.StatusOK, "203.0.113.7\n")
	stdout, stderr, err := requestAuto(t, fixedEnv(""), "--my-ip-url", url)
	if err != nil {
		t.Fatal(err)
	}
	if stderr != "jitd request: using your public address 203.0.113.7 from "+url+"\n" {
		t.Errorf("stderr = %q, want the address and where it came from", stderr)
	}
	if !strings.Contains(stdout, `source_address_prefix = "203.0.113.7"`) || strings.Contains(stdout, "auto") {
		t.Errorf("block:\n%s", stdout)
	}

	// $JITD_MY_IP_URL names the endpoint; --my-ip-url wins over it.
	env := fixedEnv("")
	env.getenv = envOf(map[string]string{EnvMyIPURL: myIPEndpoint(t, http.StatusOK, "198.51.100.20")})
	if stdout, _, err := requestAuto(t, env); err != nil || !strings.Contains(stdout, `"198.51.100.20"`) {
		t.Errorf("from $%s: %v\n%s", EnvMyIPURL, err, stdout)
	}
	if stdout, _, err := requestAuto(t, env, "--my-ip-url", url); err != nil || !strings.Contains(stdout, `"203.0.113.7"`) {
		t.Errorf("--my-ip-url over $%s: %v\n%s", EnvMyIPURL, err, stdout)
	}
}

func TestRequestSourceAutoRefusals(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
		want   string
	}{
		{"private", 200, "10.1.2.3", "10.1.2.3, a private address"},
		{"private 192.168", 200, "192.168.1.20", "a private address"},
		{"private IPv6", 200, "fd00::1", "a private address"},
		{"loopback", 200, "127.0.0.1", "a loopback address"},
		{"loopback IPv6", 200, "::1", "a loopback address"},
		{"link-local", 200, "169.254.10.1", "a link-local address"},
		{"link-local IPv6", 200, "fe80::1", "a link-local address"},
		{"CGNAT", 200, "100.72.1.2", "a carrier-grade NAT address"},
		{"unspecified", 200, "0.0.0.0", "not a public unicast address"},
		{"multicast", 200, "224.0.0.1", "not a public unicast address"},
		{"two addresses", 200, "203.0.113.7 198.51.100.1", "more than one address"},
		{"two lines", 200, "203.0.113.7\n2001:db8::7\n", "more than one address"},
		{"comma-separated", 200, "203.0.113.7,198.51.100.1", "more than one address"},
		{"garbage", 200, "<html>hello</html>", "not an IP address"},
		{"a prefix", 200, "203.0.113.0/24", "not an IP address"},
		{"empty", 200, "", "not an IP address"},
		{"error status", 503, "203.0.113.7", "answered 503"},
		{"too long", 200, strings.Repeat("1", 2000), "more than one address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, _, err := requestAuto(t, fixedEnv(""), "--my-ip-url", myIPEndpoint(t, tc.status, tc.body))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "--source <address>") ||
				!strings.HasPrefix(err.Error(), "--source auto: ") {
				t.Errorf("err = %v, want one containing %q and naming --source", err, tc.want)
			}
			if stdout != "" {
				t.Errorf("printed a block:\n%s", stdout)
			}
			if _, code := exitStatus(err); code != ExitFailure {
				t.Errorf("exit code %d, want %d", code, ExitFailure)
			}
		})
	}
	t.Run("endpoint down", func(t *testing.T) {
		closed := httptest.NewServer(http.NotFoundHandler())
		closed.Close()
		_, _, err := requestAuto(t, fixedEnv(""), "--my-ip-url", closed.URL)
		if err == nil || !strings.Contains(err.Error(), "asking "+closed.URL) {
			t.Errorf("err = %v, want one naming the endpoint", err)
		}
	})
}

// With --check, an IPv6 answer for a policy that allows only IPv4 sources
// is refused as such.
func TestRequestSourceAutoFamily(t *testing.T) {
	p := webPolicy(t, 100) // allows 203.0.113.0/24
	lister := fakeLister{testNSG: p.Rules()}
	var stdout bytes.Buffer
	args := []string{"--check", "--policy", "web@" + testNSG, "--port", "22", "--source", "auto", "--for", "1h", "--why", "x",
		"--requester", "a@example.com", "--my-ip-url", myIPEndpoint(t, 200, "2001:db8::7")}
	err := fixedEnv("").run(context.Background(), args, &stdout, &bytes.Buffer{}, lister.connect)
	if err == nil || !strings.Contains(err.Error(), "2001:db8::7, an IPv6 address, and the policy allows no IPv6 source") || stdout.Len() > 0 {
		t.Errorf("err = %v, stdout %q", err, stdout.String())
	}
	stdout.Reset()
	args[len(args)-1] = myIPEndpoint(t, 200, "203.0.113.9")
	if err := fixedEnv("").run(context.Background(), args, &stdout, &bytes.Buffer{}, lister.connect); err != nil ||
		!strings.Contains(stdout.String(), `"203.0.113.9"`) {
		t.Errorf("an allowed IPv4 answer: %v\n%s", err, stdout.String())
	}
}
