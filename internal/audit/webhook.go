package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
)

// ErrQueueFull is returned by Webhook.Emit when the event was dropped
// because the delivery queue is full (the webhook is down or slow).
var ErrQueueFull = errors.New("webhook queue full, event dropped")

// WebhookOptions tune a Webhook. The zero value is right for production.
type WebhookOptions struct {
	Client *http.Client // default: 10s timeout
	// QueueSize bounds the events waiting for delivery. Default 1000.
	QueueSize int
	// MaxAttempts bounds the deliveries of one event. Default 6.
	MaxAttempts int
	// Backoff is the first delay between attempts; it doubles up to
	// MaxBackoff. A Retry-After header wins (up to MaxBackoff). Defaults
	// 1s and 1m.
	Backoff, MaxBackoff time.Duration
	// OnError is told about every event given up on (attempts exhausted or
	// refused). It is called from the delivery goroutine.
	OnError func(error)
	// Format is the chat markup the "text" is escaped for. Default
	// FormatAuto: chosen from the URL's host.
	Format Format
}

// Format is the chat markup of a webhook's "text". Every value in the text
// that the product did not write itself (rule, policy and NSG names,
// requester, source, ports, reasons with rule descriptions or Azure's
// messages) is escaped for it, so that nobody who can write a rule
// description or a grant request can make the webhook mention a channel
// or post a disguised link.
type Format int

const (
	// FormatAuto is FormatSlack for Slack's hosts, FormatTeams for
	// Microsoft's webhook hosts (Office 365 connectors, Power Automate
	// workflows), and FormatAny for any other host, which may relay to
	// either.
	FormatAuto Format = iota
	// FormatSlack escapes for Slack mrkdwn, and asks Slack not to format,
	// link or unfurl the text at all (mrkdwn, parse, link_names and
	// unfurl_* fields).
	FormatSlack
	// FormatTeams escapes for Teams markdown (connector cards and Adaptive
	// Cards).
	FormatTeams
	// FormatAny escapes for both at once: inert in either, at the cost of
	// backslashes Slack shows.
	FormatAny
)

// formatFor is FormatAuto resolved for a webhook host.
func formatFor(host string) Format {
	host = strings.ToLower(host)
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	has := func(domain string) bool { return host == domain || strings.HasSuffix(host, "."+domain) }
	switch {
	case has("slack.com"):
		return FormatSlack
	case has("webhook.office.com"), has("outlook.office.com"), has("outlook.office365.com"),
		has("logic.azure.com"), has("api.powerplatform.com"):
		return FormatTeams
	}
	return FormatAny
}

// Webhook POSTs each event as a JSON object to a URL: the event's own
// fields plus "text", a one-line summary, which is what Slack and Microsoft
// Teams incoming webhooks display. Delivery happens in the background, so
// Emit never blocks the caller: enforcement must not wait on a chat
// service. Failed deliveries are retried with exponential backoff; when
// the queue is full new events are dropped and Emit says so.
//
// Webhook URLs often embed a secret (Slack's do), so neither errors nor
// logs ever contain the URL, only its host.
type Webhook struct {
	url      string
	host     string
	format   Format
	client   *http.Client
	opts     WebhookOptions
	queue    chan Event
	stop     chan struct{} // closed by Close when its context ends: abandon retries
	done     chan struct{} // closed when the delivery goroutine exits
	mu       sync.RWMutex  // guards closed against Emit sending on a closed queue
	closed   bool
	closing  sync.Once
	stopping sync.Once
}

// NewWebhook validates the URL (https, or http for local testing) and
// starts the delivery goroutine. Close stops it.
func NewWebhook(rawURL string, o WebhookOptions) (*Webhook, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		// url.Parse's error quotes the URL; say what is wrong without it.
		return nil, errors.New("webhook URL must be an absolute http(s) URL")
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 1000
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 6
	}
	if o.Backoff <= 0 {
		o.Backoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = time.Minute
	}
	format := o.Format
	if format == FormatAuto {
		format = formatFor(u.Host)
	}
	w := &Webhook{
		url: rawURL, host: u.Host, format: format, client: o.Client, opts: o,
		queue: make(chan Event, o.QueueSize), stop: make(chan struct{}), done: make(chan struct{}),
	}
	go w.deliverAll()
	return w, nil
}

// Emit implements Sink: it queues the event and returns at once.
func (w *Webhook) Emit(_ context.Context, e Event) error {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return errors.New("webhook closed, event dropped")
	}
	select {
	case w.queue <- e:
		return nil
	default:
		return ErrQueueFull
	}
}

// Close stops accepting events and delivers what is queued until ctx ends;
// then it abandons the rest and returns ctx's error.
func (w *Webhook) Close(ctx context.Context) error {
	w.closing.Do(func() {
		w.mu.Lock()
		w.closed = true
		close(w.queue)
		w.mu.Unlock()
	})
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		w.stopping.Do(func() { close(w.stop) })
		<-w.done
		return fmt.Errorf("webhook: undelivered events abandoned: %w", ctx.Err())
	}
}

func (w *Webhook) deliverAll() {
	defer close(w.done)
	for e := range w.queue {
		if err := w.deliver(e); err != nil && w.opts.OnError != nil {
			w.opts.OnError(err)
		}
	}
}

// deliver POSTs one event, retrying transient failures (connection
// errors, 408, 429, 5xx) with backoff.
func (w *Webhook) deliver(e Event) error {
	body, err := webhookBody(e, w.format)
	if err != nil {
		return err
	}
	delay := w.opts.Backoff
	var last error
	for attempt := 1; ; attempt++ {
		retryAfter, err := w.post(body)
		if err == nil {
			return nil
		}
		last = err
		var perm *permanentError
		if errors.As(err, &perm) || attempt >= w.opts.MaxAttempts {
			break
		}
		wait := delay
		if retryAfter > 0 {
			wait = retryAfter
		}
		wait = min(wait, w.opts.MaxBackoff)
		delay = min(delay*2, w.opts.MaxBackoff)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-w.stop:
			t.Stop()
			return fmt.Errorf("webhook %s: delivery of %s event abandoned at shutdown: %w", w.host, e.Action, last)
		}
	}
	return fmt.Errorf("webhook %s: %s event not delivered: %w", w.host, e.Action, last)
}

// permanentError is a refusal that retrying will not change.
type permanentError struct{ status int }

func (e *permanentError) Error() string { return "refused with HTTP " + strconv.Itoa(e.status) }

// post makes one attempt and returns the server's Retry-After, if any.
func (w *Webhook) post(body []byte) (time.Duration, error) {
	req, err := http.NewRequest(http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return 0, errors.New("cannot build the webhook request")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "jitd")
	resp, err := w.client.Do(req)
	if err != nil {
		// *url.Error quotes the URL, which may hold a secret: keep only
		// the cause.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return 0, fmt.Errorf("POST failed: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return 0, nil
	case resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return parseRetryAfter(resp.Header.Get("Retry-After")), fmt.Errorf("HTTP %d", resp.StatusCode)
	default:
		return 0, &permanentError{status: resp.StatusCode}
	}
}

func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(0, time.Until(t))
	}
	return 0
}

// webhookBody is the event's JSON object with a "text" field added, the
// event summarised and escaped for the chat's markup. The event's own
// fields stay as they are: they are data, not markup.
func webhookBody(e Event, f Format) ([]byte, error) {
	line, err := Marshal(e)
	if err != nil {
		return nil, err
	}
	var obj map[string]any
	if err := json.Unmarshal(line, &obj); err != nil {
		return nil, fmt.Errorf("encode webhook body: %w", err)
	}
	obj["text"] = ChatText(e, f)
	if f != FormatTeams {
		// Slack: show the text as it is, link and mention nothing, preview
		// no link. Other receivers ignore these fields.
		obj["mrkdwn"] = false
		obj["parse"] = "none"
		obj["link_names"] = false
		obj["unfurl_links"] = false
		obj["unfurl_media"] = false
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encode webhook body: %w", err)
	}
	return b, nil
}

// Text is a one-line, human-readable summary of an event, unescaped: for
// plain-text destinations only. Chat gets ChatText.
func Text(e Event) string { return summary(e, oneLine) }

// ChatText is Text with every value escaped for the chat markup f
// (FormatAuto is taken as FormatAny). Teams' escapes are inert in Slack
// too (it decodes the same three entities, and shows backslashes as they
// are), so FormatAny uses them.
func ChatText(e Event, f Format) string {
	if f == FormatSlack {
		return summary(e, EscapeSlack)
	}
	return summary(e, EscapeTeams)
}

// oneLine replaces line breaks and other control characters with spaces:
// a value must not start a new line, where markup reads headings, quotes
// and lists.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || r == '\u0085' {
			return ' '
		}
		return r
	}, s)
}

var slackEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// EscapeSlack makes untrusted text inert in Slack mrkdwn. &, < and > are
// Slack's control characters: every mention (<!channel>, <!here>, <@U…>)
// and every link with a label of its own (<https://…|click>) is written
// with them, so as entities (which Slack shows as the characters) none of
// those forms remains. Emphasis and code marks need no escape: the webhook
// body turns mrkdwn off (and Slack has no escape for them).
func EscapeSlack(s string) string { return slackEscaper.Replace(oneLine(s)) }

// teamsEscaper escapes what Teams markdown reads as markup: HTML's &, <
// and > as entities, and markdown's emphasis, code, link, image, heading
// and table punctuation with a backslash (CommonMark escapes, which render
// as the character alone). A backslash itself is escaped first.
var teamsEscaper = strings.NewReplacer(
	"&", "&amp;", "<", "&lt;", ">", "&gt;",
	`\`, `\\`, "`", "\\`", "*", `\*`, "_", `\_`, "~", `\~`,
	"[", `\[`, "]", `\]`, "(", `\(`, ")", `\)`, "#", `\#`, "!", `\!`, "|", `\|`,
	// A zero-width space after the scheme's colon keeps a URL from being
	// made a link.
	"://", ":\u200b//",
)

// EscapeTeams makes untrusted text inert in Teams markdown: no HTML, no
// emphasis or code, no [label](link) or image, no heading, and no bare URL
// that is turned into a link.
func EscapeTeams(s string) string { return teamsEscaper.Replace(oneLine(s)) }

// summary writes the one-line summary of an event, every value passed
// through esc.
func summary(e Event, esc func(string) string) string {
	var b strings.Builder
	b.WriteString(esc(e.Actor))
	switch e.Action {
	case ActionOpen:
		b.WriteString(" opened")
	case ActionClose:
		b.WriteString(" closed")
	case ActionRefuse:
		b.WriteString(" refused")
	case ActionDrift:
		b.WriteString(" found drift on")
	case ActionAdopt:
		b.WriteString(" took over")
	case ActionRestore:
		b.WriteString(" restored")
	case ActionFind:
		b.WriteString(" found")
		if e.Kind != "" {
			b.WriteString(" " + esc(strings.ReplaceAll(e.Kind, "_", " ")))
		}
	default:
		b.WriteString(" " + esc(string(e.Action)))
	}
	switch {
	case e.GrantID != "":
		fmt.Fprintf(&b, " grant %s", esc(e.GrantID))
		if e.Policy != "" {
			fmt.Fprintf(&b, " of policy %s", esc(e.Policy))
		}
	case e.Policy != "" && e.Action == ActionFind:
		fmt.Fprintf(&b, " on policy %s", esc(e.Policy))
	}
	if e.RuleName != "" {
		fmt.Fprintf(&b, " (rule %s)", esc(e.RuleName))
	}
	if len(e.NSGIDs) > 0 {
		names := make([]string, len(e.NSGIDs))
		for i, id := range e.NSGIDs {
			names[i] = esc(id[strings.LastIndex(id, "/")+1:])
		}
		fmt.Fprintf(&b, " on NSG %s", strings.Join(names, ", "))
	}
	if e.Requester != "" {
		fmt.Fprintf(&b, " for %s", esc(e.Requester))
	}
	// escAll escapes each value of a list and joins them.
	escAll := func(values []string, sep string) string {
		out := make([]string, len(values))
		for i, v := range values {
			out[i] = esc(v)
		}
		return strings.Join(out, sep)
	}
	if len(e.ApprovedBy) > 0 {
		fmt.Fprintf(&b, ", approved by %s", escAll(e.ApprovedBy, ", "))
		if e.ChangeRef != "" {
			fmt.Fprintf(&b, " in %s", esc(e.ChangeRef))
		}
	}
	if len(e.Ports) > 0 {
		fmt.Fprintf(&b, ", ports %s", escAll(e.Ports, " "))
	}
	if e.Source != "" {
		fmt.Fprintf(&b, " from %s", esc(e.Source))
	}
	if e.Reason != "" {
		fmt.Fprintf(&b, ": %s", esc(e.Reason))
	}
	if e.Result != "" && e.Result != ResultSuccess {
		fmt.Fprintf(&b, " [%s]", esc(string(e.Result)))
	}
	return b.String()
}
