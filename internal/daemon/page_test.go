package daemon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jitaccess/terraform-provider-jit/internal/audit"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

const hostile = `<script>alert("x")</script>'"&`

func getPage(t *testing.T, h http.Handler, path, remote string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.RemoteAddr = remote
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, r *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestRenderPageEscapesUntrustedText renders a status whose every text
// field is hostile: none of it may come out as markup.
func TestRenderPageEscapesUntrustedText(t *testing.T) {
	g := GrantStatus{ID: hostile, Requester: hostile, Source: hostile, Ports: []string{hostile}, RuleName: hostile,
		ExpiresAt: planNow.Add(time.Hour), TimeLeft: 3600, Closing: hostile}
	st := Status{Now: planNow, Complete: false, Errors: []string{hostile}, Filter: struct {
		Policy    string `json:"policy,omitempty"`
		NSG       string `json:"nsg,omitempty"`
		Requester string `json:"requester,omitempty"`
	}{hostile, hostile, hostile},
		Policies: []PolicyStatus{{Name: hostile, NSGs: []PolicyOnNSG{{NSGID: hostile, State: hostile, Problem: hostile, Stale: hostile,
			SessionsEnded: hostile, SessionsDetail: hostile, OtherGrants: []GrantStatus{g},
			Ports: []PortStatus{{Port: hostile, MaxDuration: hostile, Grants: []GrantStatus{g},
				StandingAccess:     []RuleStatus{{Name: hostile, Sources: []string{hostile}, Reason: hostile}},
				Bypasses:           []RuleStatus{{Name: hostile, Sources: []string{hostile}, Reason: hostile}},
				AdminRuleOverrides: []AdminRuleOverride{{Name: hostile, Action: hostile, Detail: hostile}}}}}}}},
		Findings: []StatusFinding{{NSGID: hostile, Kind: hostile, Policy: hostile, Rule: hostile, Detail: hostile}}}
	events := []audit.Event{{Time: planNow, Action: audit.Action(hostile), Result: audit.Result(hostile), Policy: hostile, GrantID: hostile,
		Requester: hostile, RuleName: hostile, NSGIDs: []string{hostile}, Reason: hostile, Kind: hostile}}
	var buf bytes.Buffer
	if err := RenderPage(&buf, st, events, hostile); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	for _, bad := range []string{"<script", `"x"`, `'"&`} {
		if strings.Contains(page, bad) {
			t.Errorf("the page contains %q unescaped", bad)
		}
	}
	if n := strings.Count(page, "&lt;script&gt;"); n < 20 {
		t.Errorf("the hostile text appears escaped %d times, want every field (at least 20)", n)
	}
}

func TestStatusPageThroughTheDaemon(t *testing.T) {
	web := testPolicy(t, "web", 100)
	az := newFakeAzure()
	// A foreign rule named and described with markup: a bypass on port 22.
	foreign := jit.SecurityRule{Name: hostile, Description: hostile, Priority: 90, Direction: jit.Inbound, Access: jit.Allow,
		Protocol: jit.ProtocolTCP, SourcePrefixes: []string{"*"}, SourcePorts: []string{"*"},
		DestinationPrefixes: []string{"*"}, DestinationPorts: []string{"22"}}
	open := requesterGrant(t, web, "open1", "203.0.113.7", "alice@example.com", time.Now().Add(time.Hour), 1)
	expired := requesterGrant(t, web, "gone1", "203.0.113.8", "bob@example.com", time.Now().Add(-time.Minute), 2)
	az.put("nsg-a", append(web.Rules(), open, expired, foreign)...)
	d, _ := newTestDaemon(t, az, Options{Version: "1.2.3"})
	h := d.Handler()

	// Before the first pass the page must not say that nothing is open.
	resp := getPage(t, h, "/status", "127.0.0.1:5555")
	page := body(t, resp)
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, `id="incomplete"`) || strings.Contains(page, "No grant is open") {
		t.Fatalf("before the first pass: %d\n%s", resp.StatusCode, page)
	}
	for k, want := range map[string]string{
		"Content-Security-Policy": PageCSP,
		"X-Content-Type-Options":  "nosniff",
		"Content-Type":            "text/html; charset=utf-8",
		"Cache-Control":           "no-store",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}

	if sum := d.Pass(t.Context()); sum.Err() != nil {
		t.Fatal(sum.Err())
	}
	page = body(t, getPage(t, h, "/status", "[::1]:5555"))
	for _, want := range []string{"open1", "alice@example.com", "203.0.113.7", "jitd 1.2.3", `id="findings"`, "bypass",
		"&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;", "expired"} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	// The expired grant was closed by the pass: it is in the audit events,
	// not among the grants.
	grants, events, _ := strings.Cut(page, `id="events"`)
	if strings.Contains(grants, `<td class="mono">gone1</td>`) {
		t.Error("the closed grant is still shown as a grant")
	}
	if !strings.Contains(events, `<td class="mono">gone1</td><td>bob@example.com</td><td class="mono">jit-web-g-gone1</td>`) {
		t.Errorf("the close of gone1 is not among the recent events:\n%s", page)
	}
	if strings.Contains(page, "<script") {
		t.Error("markup from a rule name reached the page")
	}

	// JSON, filtered.
	resp = getPage(t, h, "/status.json?requester=nobody", "127.0.0.1:1")
	var got struct {
		Status
		Events []audit.Event `json:"recent_events"`
	}
	if err := json.Unmarshal([]byte(body(t, resp)), &got); err != nil {
		t.Fatal(err)
	}
	if !got.Complete || len(got.Policies) != 0 || len(got.Events) == 0 {
		t.Errorf("filtered JSON: complete=%v policies=%d events=%d", got.Complete, len(got.Policies), len(got.Events))
	}

	// Remote clients are refused unless asked for; / redirects.
	if resp := getPage(t, h, "/status", "192.0.2.10:4444"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("remote client: %d, want 403", resp.StatusCode)
	}
	if resp := getPage(t, h, "/", "127.0.0.1:1"); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/status" {
		t.Errorf("/: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	d2, _ := newTestDaemon(t, az, Options{StatusRemote: true})
	if resp := getPage(t, d2.Handler(), "/status", "192.0.2.10:4444"); resp.StatusCode != http.StatusOK {
		t.Errorf("remote client with StatusRemote: %d, want 200", resp.StatusCode)
	}
}

func TestRecentEventsAreBounded(t *testing.T) {
	az := newFakeAzure()
	d, _ := newTestDaemon(t, az, Options{RecentEvents: 3})
	for i := range 5 {
		d.emit(t.Context(), audit.Event{RuleName: fmt.Sprint(i)})
	}
	_, events := d.Status(StatusFilter{})
	if len(events) != 3 || events[0].RuleName != "2" || events[2].RuleName != "4" {
		t.Fatalf("events %+v", events)
	}
}

func TestMetricsOfStatus(t *testing.T) {
	web := testPolicy(t, "web", 100)
	db := testPolicy(t, "db", 300)
	az := newFakeAzure()
	exp := time.Now().Add(20 * time.Minute).Truncate(time.Second)
	az.put("nsg-a", append(web.Rules(), requesterGrant(t, web, "a1", "203.0.113.7", "alice@example.com", exp, 1),
		requesterGrant(t, web, "a2", "203.0.113.8", "bob@example.com", exp.Add(time.Minute), 2))...)
	az.put("nsg-b", db.Rules()...)
	d, _ := newTestDaemon(t, az, Options{Version: "1.2.3"})
	before := getMetrics(t, d)
	for _, want := range []string{
		`jitd_closes_total{reason="expired",result="success"} 0`,
		`jitd_closes_total{reason="tampered",result="failure"} 0`,
		`jitd_closes_total{reason="orphan",result="dry_run"} 0`,
		`jitd_build_info{goversion="go`,
		`version="1.2.3"} 1`,
		"jitd_next_expiry_timestamp_seconds 0",
	} {
		if !strings.Contains(before, want) {
			t.Errorf("/metrics before the first pass lacks %q", want)
		}
	}
	if sum := d.Pass(t.Context()); sum.Err() != nil {
		t.Fatal(sum.Err())
	}
	after := getMetrics(t, d)
	for _, want := range []string{
		"jitd_active_grants 2",
		`jitd_active_grants_by_policy{policy="web"} 2`,
		`jitd_active_grants_by_policy{policy="db"} 0`,
		fmt.Sprintf("jitd_next_expiry_timestamp_seconds %s", formatFloat(float64(exp.Unix()))),
	} {
		if !strings.Contains(after, want) {
			t.Errorf("/metrics after the pass lacks %q", want)
		}
	}
}

func getMetrics(t *testing.T, d *Daemon) string {
	t.Helper()
	resp := getPage(t, d.Handler(), "/metrics", "127.0.0.1:1")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	return body(t, resp)
}

// formatFloat is how the Prometheus text format writes a float.
func formatFloat(f float64) string {
	return strings.ToLower(fmt.Sprintf("%g", f))
}

// A page view keeps each NSG's judged part until the NSG is read again or
// a grant in it expires: a grant seen valid at one view is shown expired
// at a view after its expiry, with no read in between, and a new read
// replaces the part.
func TestStatusKeepsPartsUntilAnExpiryOrARead(t *testing.T) {
	web := testPolicy(t, "web", 100)
	az := newFakeAzure()
	az.put("nsg-a", append(web.Rules(), requesterGrant(t, web, "a1", "203.0.113.7", "alice@example.com", planNow.Add(time.Minute), 1))...)
	now := planNow
	d, _ := newTestDaemon(t, az, Options{Now: func() time.Time { return now }})
	if sum := d.Pass(t.Context()); sum.Err() != nil {
		t.Fatal(sum.Err())
	}
	grant := func() GrantStatus {
		st, _ := d.Status(StatusFilter{})
		if len(st.Policies) != 1 || len(st.Policies[0].NSGs[0].Ports[0].Grants) != 1 {
			t.Fatalf("status %+v", st.Policies)
		}
		return st.Policies[0].NSGs[0].Ports[0].Grants[0]
	}
	if g := grant(); g.Closing != "" || g.TimeLeft != 60 {
		t.Fatalf("at the first view: %+v", g)
	}
	now = planNow.Add(30 * time.Second)
	if g := grant(); g.Closing != "" || g.TimeLeft != 30 {
		t.Fatalf("30s later: %+v", g)
	}
	now = planNow.Add(time.Minute)
	if g := grant(); g.Closing != string(ReasonExpired) || g.TimeLeft != 0 {
		t.Fatalf("at its expiry, not read again: %+v", g)
	}
	// Filtering a view does not change the parts kept for the next.
	if st, _ := d.Status(StatusFilter{Requester: "nobody"}); len(st.Policies) != 0 {
		t.Fatalf("filtered: %+v", st.Policies)
	}
	if g := grant(); g.ID != "a1" {
		t.Fatalf("after a filtered view: %+v", g)
	}
	if sum := d.Pass(t.Context()); sum.Err() != nil {
		t.Fatal(sum.Err())
	}
	if st, _ := d.Status(StatusFilter{}); st.ActiveGrants != 0 || len(st.Policies[0].NSGs[0].Ports[0].Grants) != 0 {
		t.Fatalf("after the pass that closed it: %+v", st.Policies)
	}
}

// The page is read while the loop runs: a view during the loop's reads
// and closes sees either the NSG before or after them (run with -race).
func TestStatusWhileRunning(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		web := testPolicy(t, "web", 100)
		az := newFakeAzure()
		exp := time.Now().Add(90 * time.Second).Truncate(time.Second)
		for i := range 20 {
			az.put(fmt.Sprintf("nsg-%d", i), append(web.Rules(), requesterGrant(t, web, "g", "203.0.113.7", "alice@example.com", exp, 1))...)
		}
		d, _ := newTestDaemon(t, az, Options{Interval: time.Hour, Concurrency: 4})
		stop := startRun(t, d)
		defer stop()
		h := d.Handler()
		done := make(chan struct{})
		go func() {
			defer close(done)
			for range 3 {
				if resp := getPage(t, h, "/status", "127.0.0.1:1"); resp.StatusCode != http.StatusOK {
					t.Errorf("/status: %d", resp.StatusCode)
				}
			}
		}()
		<-done
		synctest.Wait()
		if st, _ := d.Status(StatusFilter{}); st.ActiveGrants != 20 || !st.Complete {
			t.Fatalf("before the expiry: %d active, complete %v", st.ActiveGrants, st.Complete)
		}
		time.Sleep(time.Until(exp))
		synctest.Wait()
		if st, events := d.Status(StatusFilter{}); st.ActiveGrants != 0 || len(st.Findings) != 0 || len(events) != 20 {
			t.Fatalf("after the expiry: %d active, findings %v, %d events", st.ActiveGrants, st.Findings, len(events))
		}
	})
}

// The close log line carries lag as a number of seconds, not a Go
// duration string, so that a log pipeline can aggregate it.
func TestCloseLogsLagInSeconds(t *testing.T) {
	web := testPolicy(t, "web", 100)
	az := newFakeAzure()
	az.put("nsg-a", append(web.Rules(), grantRule(t, web, "old", planNow.Add(-2*time.Second)))...)
	var logs bytes.Buffer
	d, _ := newTestDaemon(t, az, Options{Now: func() time.Time { return planNow }, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if sum := d.Pass(t.Context()); sum.Err() != nil || sum.Closed != 1 {
		t.Fatalf("pass: %v, closed %d", sum.Err(), sum.Closed)
	}
	for line := range strings.Lines(logs.String()) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec["msg"] != "closed rule" {
			continue
		}
		if lag, ok := rec["lag"].(float64); !ok || lag != 2 {
			t.Fatalf("lag %#v, want the number 2", rec["lag"])
		}
		return
	}
	t.Fatalf("no close log line:\n%s", logs.String())
}
