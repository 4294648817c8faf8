package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
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
	w := &Webhook{
		url: rawURL, host: u.Host, client: o.Client, opts: o,
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
	body, err := webhookBody(e)
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

// webhookBody is the event's JSON object with a "text" field added.
func webhookBody(e Event) ([]byte, error) {
	line, err := Marshal(e)
	if err != nil {
		return nil, err
	}
	var obj map[string]any
	if err := json.Unmarshal(line, &obj); err != nil {
		return nil, fmt.Errorf("encode webhook body: %w", err)
	}
	obj["text"] = Text(e)
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encode webhook body: %w", err)
	}
	return b, nil
}

// Text is a one-line, human-readable summary of an event, for chat.
func Text(e Event) string {
	var b strings.Builder
	b.WriteString(e.Actor)
	switch e.Action {
	case ActionOpen:
		b.WriteString(" opened")
	case ActionClose:
		b.WriteString(" closed")
	case ActionRefuse:
		b.WriteString(" refused")
	case ActionDrift:
		b.WriteString(" found drift on")
	case ActionFind:
		b.WriteString(" found")
		if e.Kind != "" {
			b.WriteString(" " + strings.ReplaceAll(e.Kind, "_", " "))
		}
	default:
		b.WriteString(" " + string(e.Action))
	}
	switch {
	case e.GrantID != "":
		fmt.Fprintf(&b, " grant %s", e.GrantID)
		if e.Policy != "" {
			fmt.Fprintf(&b, " of policy %s", e.Policy)
		}
	case e.Policy != "" && e.Action == ActionFind:
		fmt.Fprintf(&b, " on policy %s", e.Policy)
	}
	if e.RuleName != "" {
		fmt.Fprintf(&b, " (rule %s)", e.RuleName)
	}
	if len(e.NSGIDs) > 0 {
		names := make([]string, len(e.NSGIDs))
		for i, id := range e.NSGIDs {
			names[i] = id[strings.LastIndex(id, "/")+1:]
		}
		fmt.Fprintf(&b, " on NSG %s", strings.Join(names, ", "))
	}
	if e.Requester != "" {
		fmt.Fprintf(&b, " for %s", e.Requester)
	}
	if len(e.Ports) > 0 {
		fmt.Fprintf(&b, ", ports %s", strings.Join(e.Ports, " "))
	}
	if e.Source != "" {
		fmt.Fprintf(&b, " from %s", e.Source)
	}
	if e.Reason != "" {
		fmt.Fprintf(&b, ": %s", e.Reason)
	}
	if e.Result != "" && e.Result != ResultSuccess {
		fmt.Fprintf(&b, " [%s]", e.Result)
	}
	return b.String()
}
