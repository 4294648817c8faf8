package audit

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// hookServer answers webhook POSTs with the statuses given, in turn (the
// last one repeating), and keeps the bodies.
type hookServer struct {
	*httptest.Server
	mu       sync.Mutex
	statuses []int
	bodies   []map[string]any
	entered  chan struct{} // receives on every request, if not nil
	block    chan struct{} // requests wait for it, if not nil
}

func newHookServer(t *testing.T, statuses ...int) *hookServer {
	h := &hookServer{statuses: statuses}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.entered != nil {
			h.entered <- struct{}{}
		}
		if h.block != nil {
			<-h.block
		}
		var body map[string]any
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &body); err != nil || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("webhook body %q (%s): %v", b, r.Header.Get("Content-Type"), err)
		}
		h.mu.Lock()
		h.bodies = append(h.bodies, body)
		status := h.statuses[min(len(h.bodies), len(h.statuses))-1]
		h.mu.Unlock()
		if status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "0")
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hookServer) received() []map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]map[string]any(nil), h.bodies...)
}

// errorLog collects OnError reports.
type errorLog struct {
	mu   sync.Mutex
	errs []error
}

func (l *errorLog) add(err error) { l.mu.Lock(); l.errs = append(l.errs, err); l.mu.Unlock() }
func (l *errorLog) all() []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]error(nil), l.errs...)
}

var closeEvent = Event{
	Time: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC), Action: ActionClose, Result: ResultSuccess, Actor: "jitd",
	GrantID: "a1b2", Policy: "web-ssh", RuleName: "jit-web-ssh-g-a1b2",
	NSGIDs: []string{"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/web-nsg"},
	Ports:  []string{"22/Tcp"}, Source: "203.0.113.7", Requester: "alice@example.com",
	ExpiresAt: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC), Reason: "expired",
}

func fastOptions(l *errorLog) WebhookOptions {
	return WebhookOptions{Backoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond, OnError: l.add}
}

func closeWebhook(t *testing.T, w *Webhook) {
	t.Helper()
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestWebhookRetriesTransientFailures(t *testing.T) {
	srv := newHookServer(t, http.StatusServiceUnavailable, http.StatusTooManyRequests, http.StatusOK)
	var errs errorLog
	w, err := NewWebhook(srv.URL+"/hook", fastOptions(&errs))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Emit(context.Background(), closeEvent); err != nil {
		t.Fatal(err)
	}
	closeWebhook(t, w) // delivers what is queued

	bodies := srv.received()
	if len(bodies) != 3 {
		t.Fatalf("attempts = %d, want 3 (503, 429, then 200)", len(bodies))
	}
	last := bodies[2]
	for k, want := range map[string]any{"action": "close", "grant_id": "a1b2", "actor": "jitd", "reason": "expired",
		"text": "jitd closed grant a1b2 of policy web-ssh (rule jit-web-ssh-g-a1b2) on NSG web-nsg for alice@example.com, ports 22/Tcp from 203.0.113.7: expired"} {
		if last[k] != want {
			t.Errorf("body[%q] = %v, want %v", k, last[k], want)
		}
	}
	if got := errs.all(); len(got) != 0 {
		t.Errorf("OnError called: %v", got)
	}
}

func TestWebhookGivesUpOnRefusalWithoutLeakingTheURL(t *testing.T) {
	srv := newHookServer(t, http.StatusBadRequest)
	var errs errorLog
	w, err := NewWebhook(srv.URL+"/services/T000/B000/s3cr3t", fastOptions(&errs))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Emit(context.Background(), closeEvent); err != nil {
		t.Fatal(err)
	}
	closeWebhook(t, w)
	if n := len(srv.received()); n != 1 {
		t.Errorf("attempts = %d, want 1: a 400 is not retried", n)
	}
	got := errs.all()
	if len(got) != 1 || !strings.Contains(got[0].Error(), "400") || strings.Contains(got[0].Error(), "s3cr3t") {
		t.Errorf("OnError = %v, want one error naming the status and not the URL", got)
	}
}

func TestWebhookUnreachableErrorOmitsTheURL(t *testing.T) {
	srv := newHookServer(t, http.StatusOK)
	url := srv.URL + "/hook/s3cr3t"
	srv.Close() // nothing listens any more
	var errs errorLog
	o := fastOptions(&errs)
	o.MaxAttempts = 2
	w, err := NewWebhook(url, o)
	if err != nil {
		t.Fatal(err)
	}
	_ = w.Emit(context.Background(), closeEvent)
	closeWebhook(t, w)
	got := errs.all()
	if len(got) != 1 || strings.Contains(got[0].Error(), "s3cr3t") {
		t.Errorf("OnError = %v, want one error without the URL's secret", got)
	}
}

func TestWebhookNeverBlocksEmit(t *testing.T) {
	srv := newHookServer(t, http.StatusOK)
	srv.entered, srv.block = make(chan struct{}, 10), make(chan struct{})
	var errs errorLog
	o := fastOptions(&errs)
	o.QueueSize = 1
	w, err := NewWebhook(srv.URL, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Emit(context.Background(), closeEvent); err != nil {
		t.Fatal(err)
	}
	<-srv.entered // the first event is in delivery, stuck at the server
	if err := w.Emit(context.Background(), closeEvent); err != nil {
		t.Fatalf("second event (fills the queue): %v", err)
	}
	if err := w.Emit(context.Background(), closeEvent); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("third event = %v, want ErrQueueFull at once", err)
	}
	close(srv.block)
	closeWebhook(t, w)
	if n := len(srv.received()); n != 2 {
		t.Errorf("delivered %d events, want the 2 accepted", n)
	}
	if err := w.Emit(context.Background(), closeEvent); err == nil {
		t.Error("Emit after Close succeeded")
	}
}

func TestWebhookCloseAbandonsRetriesWhenItsContextEnds(t *testing.T) {
	srv := newHookServer(t, http.StatusServiceUnavailable)
	srv.entered = make(chan struct{}, 10)
	var errs errorLog
	w, err := NewWebhook(srv.URL, WebhookOptions{Backoff: time.Hour, MaxBackoff: time.Hour, OnError: errs.add})
	if err != nil {
		t.Fatal(err)
	}
	_ = w.Emit(context.Background(), closeEvent)
	<-srv.entered // first attempt failed; the next one is an hour away
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w.Close(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Close = %v, want context.Canceled", err)
	}
	if got := errs.all(); len(got) != 1 || !strings.Contains(got[0].Error(), "abandoned") {
		t.Errorf("OnError = %v, want the abandoned delivery reported", got)
	}
}

func TestNewWebhookRejectsBadURLs(t *testing.T) {
	for _, u := range []string{"", "hooks.example.com/x", "ftp://example.com/x", "https://"} {
		if _, err := NewWebhook(u, WebhookOptions{}); err == nil {
			t.Errorf("NewWebhook(%q) succeeded", u)
		}
	}
}

func TestTextOfAFinding(t *testing.T) {
	e := Event{Action: ActionFind, Actor: "jitd", Kind: "bypass", Policy: "web-ssh", RuleName: "allow-ssh",
		NSGIDs: []string{"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/web-nsg"},
		Reason: "22/Tcp: allows * before the deny-all", Result: ResultSuccess}
	want := "jitd found bypass on policy web-ssh (rule allow-ssh) on NSG web-nsg: 22/Tcp: allows * before the deny-all"
	if got := Text(e); got != want {
		t.Errorf("Text = %q, want %q", got, want)
	}
}

// hostile is text anyone who can write a rule description or a grant
// request controls: Slack mentions and labelled links, markdown links,
// emphasis, code, HTML and a line break starting a heading.
const hostile = "<!channel> <!here> <@U024BE7LH> <https://evil.example|renew your access> " +
	"[click](https://evil.example) ![img](https://evil.example/x.png) *bold* _it_ ~gone~ `code` " +
	"<a href=\"https://evil.example\">x</a> &lt;!channel&gt;\n# heading https://evil.example/login"

func hostileEvent() Event {
	return Event{Action: ActionFind, Actor: "jitd", Kind: "standing_access", Policy: "web-ssh",
		RuleName: "allow-vpn <!channel>", Requester: "[boss](https://evil.example)",
		NSGIDs: []string{"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/web-nsg"},
		Ports:  []string{"22/Tcp"}, Source: "10.8.0.0/16", Reason: "rule description: " + hostile, Result: ResultSuccess,
		// ApprovalFromEnv refuses such values; the text escapes them anyway.
		Approval: Approval{ApprovedBy: []string{"<!here>", "[boss](https://evil.example)"}, ChangeRef: "*o/r#1*\n# x"}}
}

// inertForSlack checks that text holds no Slack control sequence and no
// line break: every & starts one of the three entities Slack decodes.
func inertForSlack(t *testing.T, text string) {
	t.Helper()
	if strings.ContainsAny(text, "<>\n\r") {
		t.Errorf("Slack text holds <, > or a line break: %q", text)
	}
	for i := strings.IndexByte(text, '&'); i >= 0; i = nextByte(text, '&', i) {
		rest := text[i:]
		if !strings.HasPrefix(rest, "&amp;") && !strings.HasPrefix(rest, "&lt;") && !strings.HasPrefix(rest, "&gt;") {
			t.Errorf("Slack text holds a bare &: %q", rest)
		}
	}
}

// inertForTeams checks that text holds no HTML, no line break, no URL
// scheme separator and no markdown punctuation that is not escaped, but
// for the characters in ours (the summary's own parentheses).
func inertForTeams(t *testing.T, text, ours string) {
	t.Helper()
	inertForSlack(t, text) // the same three entities, no tags
	if strings.Contains(text, "://") {
		t.Errorf("Teams text holds a linkable URL: %q", text)
	}
	for i := 0; i < len(text); i++ {
		switch c := text[i]; {
		case c == '\\':
			if i+1 >= len(text) || !strings.ContainsRune(teamsMarkup, rune(text[i+1])) {
				t.Errorf("Teams text holds a stray backslash at %d: %q", i, text)
			}
			i++ // the escaped character
		case strings.ContainsRune(teamsMarkup, rune(c)) && !strings.ContainsRune(ours, rune(c)):
			t.Errorf("Teams text holds unescaped %q at %d: %q", c, i, text)
		}
	}
}

// teamsMarkup is the punctuation EscapeTeams escapes with a backslash.
const teamsMarkup = "\\`*_~[]()#!|"

func nextByte(s string, c byte, after int) int {
	if j := strings.IndexByte(s[after+1:], c); j >= 0 {
		return after + 1 + j
	}
	return -1
}

func TestEscapeSlack(t *testing.T) {
	tests := []struct{ in, want string }{
		{"alice@example.com", "alice@example.com"},
		{"jit-web_ssh-g-a1b2", "jit-web_ssh-g-a1b2"},
		{"<!channel>", "&lt;!channel&gt;"},
		{"<@U024BE7LH> hi", "&lt;@U024BE7LH&gt; hi"},
		{"<https://evil.example|click>", "&lt;https://evil.example|click&gt;"},
		{"a & b", "a &amp; b"},
		{"&lt;!here&gt;", "&amp;lt;!here&amp;gt;"},
		{"line\nbreak\r\u2028x", "line break  x"},
	}
	for _, tt := range tests {
		if got := EscapeSlack(tt.in); got != tt.want {
			t.Errorf("EscapeSlack(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestEscapeTeams(t *testing.T) {
	tests := []struct{ in, want string }{
		{"alice@example.com", "alice@example.com"},
		{"22/Tcp from 10.8.0.0/16", "22/Tcp from 10.8.0.0/16"},
		{"jit-web_ssh", `jit-web\_ssh`},
		{"[click](https://evil.example)", "\\[click\\]\\(https:\u200b//evil.example\\)"},
		{"![x](y)", `\!\[x\]\(y\)`},
		{"*bold* `code` ~s~", "\\*bold\\* \\`code\\` \\~s\\~"},
		{`<a href="x">`, `&lt;a href="x"&gt;`},
		{`a\*b`, `a\\\*b`},
		{"x\n# heading", `x \# heading`},
		{"| a | b |", `\| a \| b \|`},
	}
	for _, tt := range tests {
		if got := EscapeTeams(tt.in); got != tt.want {
			t.Errorf("EscapeTeams(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// The text a webhook posts shows untrusted values but no markup of theirs,
// in every format; the event's own fields keep the values as they are.
func TestWebhookTextIsInert(t *testing.T) {
	for name, format := range map[string]Format{"slack": FormatSlack, "teams": FormatTeams, "any": FormatAuto} {
		t.Run(name, func(t *testing.T) {
			srv := newHookServer(t, http.StatusOK)
			var errs errorLog
			o := fastOptions(&errs)
			o.Format = format
			w, err := NewWebhook(srv.URL, o) // a local host: FormatAuto is FormatAny
			if err != nil {
				t.Fatal(err)
			}
			e := hostileEvent()
			if err := w.Emit(context.Background(), e); err != nil {
				t.Fatal(err)
			}
			closeWebhook(t, w)
			bodies := srv.received()
			if len(bodies) != 1 {
				t.Fatalf("%d bodies, want 1", len(bodies))
			}
			body := bodies[0]
			text, _ := body["text"].(string)
			t.Log(text)
			bad := []string{"<!channel>", "<!here>", "<@U", "<https", "<a ", "\n"}
			if format != FormatSlack {
				// Slack shows these as they are: the body turns mrkdwn off,
				// and a [label](link) is no link in Slack.
				bad = append(bad, "](", "*bold*", "`code`", "https://")
			}
			for _, b := range bad {
				if strings.Contains(text, b) {
					t.Errorf("text holds %q: %q", b, text)
				}
			}
			if format == FormatSlack {
				inertForSlack(t, text)
				if !strings.Contains(text, "&lt;!channel&gt;") || body["mrkdwn"] != false || body["parse"] != "none" ||
					body["link_names"] != false || body["unfurl_links"] != false {
					t.Errorf("Slack body does not show the mention as text or turn formatting off: %v", body)
				}
			} else {
				inertForTeams(t, text, "()")
			}
			if body["reason"] != e.Reason || body["requester"] != e.Requester || body["rule_name"] != e.RuleName {
				t.Errorf("the event's fields changed: %v", body)
			}
		})
	}
}

func TestWebhookFormatFromHost(t *testing.T) {
	tests := map[string]Format{
		"hooks.slack.com":                            FormatSlack,
		"HOOKS.SLACK.COM:443":                        FormatSlack,
		"contoso.webhook.office.com":                 FormatTeams,
		"outlook.office.com":                         FormatTeams,
		"prod-12.westeurope.logic.azure.com:443":     FormatTeams,
		"default1.environment.api.powerplatform.com": FormatTeams,
		"slack.com.evil.example":                     FormatAny,
		"hooks.example.com":                          FormatAny,
		"127.0.0.1:8080":                             FormatAny,
	}
	for host, want := range tests {
		if got := formatFor(host); got != want {
			t.Errorf("formatFor(%q) = %v, want %v", host, got, want)
		}
	}
}

func FuzzEscapeSlack(f *testing.F) {
	for _, s := range []string{hostile, "<!channel>", "&amp;<", "a\nb", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := EscapeSlack(s)
		inertForSlack(t, got)
		// Nothing is lost: Slack's decoding gives back the one-line input.
		back := strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&").Replace(got)
		if back != oneLine(s) {
			t.Errorf("EscapeSlack(%q) = %q decodes to %q", s, got, back)
		}
	})
}

func FuzzEscapeTeams(f *testing.F) {
	for _, s := range []string{hostile, "[a](b)", `\\*`, "http://x", ":/", "a\nb", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		inertForTeams(t, EscapeTeams(s), "")
	})
}

func TestTextOfAnAdoptionAndARestore(t *testing.T) {
	adopt := Event{Action: ActionAdopt, Actor: "terraform-provider-jit", GrantID: "k3j9x0p2ab", Policy: "web-ssh",
		Result: ResultSuccess, Reason: "already open"}
	if got := Text(adopt); !strings.HasPrefix(got, "terraform-provider-jit took over grant k3j9x0p2ab of policy web-ssh") {
		t.Errorf("Text = %q", got)
	}
	restore := Event{Action: ActionRestore, Actor: "jitd", Policy: "web-ssh", RuleName: "jit-web-ssh-deny-tcp", Result: ResultSuccess}
	if got := Text(restore); !strings.HasPrefix(got, "jitd restored") || !strings.Contains(got, "jit-web-ssh-deny-tcp") {
		t.Errorf("Text = %q", got)
	}
}
