package azure

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
)

// scriptedTransport answers requests from a script, repeating the last
// answer once the script runs out, and records each request body.
type scriptedTransport struct {
	mu      sync.Mutex
	answers []answer
	bodies  []string
}

type answer struct {
	status  int
	code    string
	headers map[string]string
	err     error
}

func (s *scriptedTransport) Do(req *http.Request) (*http.Response, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	body := ""
	if req.Body != nil {
		b, _ := io.ReadAll(req.Body)
		body = string(b)
	}
	s.bodies = append(s.bodies, body)
	a := s.answers[min(len(s.bodies), len(s.answers))-1]
	if a.err != nil {
		return nil, a.err
	}
	resp := &http.Response{StatusCode: a.status, Header: http.Header{}, Request: req,
		Body: io.NopCloser(strings.NewReader("{}"))}
	if a.code != "" {
		resp.Body = io.NopCloser(strings.NewReader(fmt.Sprintf(`{"error":{"code":%q,"message":"m"}}`, a.code)))
	}
	for k, v := range a.headers {
		resp.Header.Set(k, v)
	}
	return resp, nil
}

func (s *scriptedTransport) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.bodies...)
}

// recordedWaits is a busyRetryPolicy wait that records instead of sleeping.
// With cancel set, it cancels the request's context during the first wait,
// as a user pressing Ctrl-C would.
type recordedWaits struct {
	mu     sync.Mutex
	waits  []time.Duration
	cancel context.CancelFunc
}

func (r *recordedWaits) wait(ctx context.Context, d time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.waits = append(r.waits, d)
	if r.cancel != nil {
		r.cancel()
	}
	return ctx.Err()
}

// send puts one request with a body through a pipeline built like
// NewClient's, with the busy policy's waits recorded and azcore's own
// retries undelayed.
func send(t *testing.T, tr *scriptedTransport, w *recordedWaits, maxRetries int) (*http.Response, error) {
	t.Helper()
	return sendContext(context.Background(), t, tr, w, maxRetries)
}

func sendContext(ctx context.Context, t *testing.T, tr *scriptedTransport, w *recordedWaits, maxRetries int) (*http.Response, error) {
	t.Helper()
	bp := &busyRetryPolicy{maxRetries: maxRetries, backoff: backoff{base: time.Second, max: time.Minute}, wait: w.wait}
	pl := runtime.NewPipeline("azuretest", "v0.0.0", runtime.PipelineOptions{}, &policy.ClientOptions{
		Transport:        tr,
		Retry:            policy.RetryOptions{MaxRetries: int32(maxRetries), RetryDelay: time.Nanosecond, ShouldRetry: shouldRetry},
		PerRetryPolicies: []policy.Policy{bp},
	})
	req, err := runtime.NewRequest(ctx, http.MethodPut, "https://management.example/rule")
	if err != nil {
		t.Fatal(err)
	}
	if err := req.SetBody(streaming.NopCloser(strings.NewReader(`{"properties":{"priority":100}}`)), "application/json"); err != nil {
		t.Fatal(err)
	}
	return pl.Do(req)
}

func TestBusyRetryPolicyRetriesAnotherOperationInProgress(t *testing.T) {
	tr := &scriptedTransport{answers: []answer{
		{status: 409, code: "AnotherOperationInProgress", headers: map[string]string{"Retry-After": "7"}},
		{status: 409, code: "AnotherOperationInProgress"},
		{status: 200},
	}}
	w := &recordedWaits{}
	resp, err := send(t, tr, w, 8)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("got %v, %v; want 200", resp, err)
	}
	bodies := tr.requests()
	if len(bodies) != 3 {
		t.Fatalf("%d requests, want 3", len(bodies))
	}
	for i, b := range bodies {
		if b != bodies[0] || b == "" {
			t.Errorf("request %d body %q, want %q (the body must be resent whole)", i, b, bodies[0])
		}
	}
	if len(w.waits) != 2 || w.waits[0] != 7*time.Second {
		t.Fatalf("waits %v, want Retry-After's 7s then a backoff", w.waits)
	}
	// Second retry without Retry-After: base doubled, jittered by [0.8, 1.3).
	if d := w.waits[1]; d < 1600*time.Millisecond || d >= 2600*time.Millisecond {
		t.Errorf("backoff %v outside [1.6s, 2.6s)", d)
	}
}

func TestBusyRetryPolicyRetriesBusyThrottle(t *testing.T) {
	tr := &scriptedTransport{answers: []answer{
		{status: 429, code: "RetryableErrorDueToAnotherOperation", headers: map[string]string{"retry-after-ms": "250"}},
		{status: 201},
	}}
	w := &recordedWaits{}
	resp, err := send(t, tr, w, 8)
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("got %v, %v; want 201", resp, err)
	}
	if len(w.waits) != 1 || w.waits[0] != 250*time.Millisecond {
		t.Errorf("waits %v, want [250ms] (the busy policy, not azcore, retried)", w.waits)
	}
}

func TestBusyRetryPolicyGivesUp(t *testing.T) {
	tr := &scriptedTransport{answers: []answer{{status: 409, code: "AnotherOperationInProgress"}}}
	w := &recordedWaits{}
	resp, err := send(t, tr, w, 3)
	if err != nil || resp.StatusCode != 409 {
		t.Fatalf("got %v, %v; want the last 409", resp, err)
	}
	// 1 try + 3 busy retries; azcore must not multiply them with its own.
	if n := len(tr.requests()); n != 4 {
		t.Errorf("%d requests, want 4", n)
	}
}

func TestBusyRetryPolicyLeavesOtherAnswersAlone(t *testing.T) {
	for _, a := range []answer{
		{status: 409, code: "Conflict"},
		{status: 400, code: "SecurityRuleConflict"},
		{status: 404, code: "NotFound"},
	} {
		tr := &scriptedTransport{answers: []answer{a, {status: 200}}}
		w := &recordedWaits{}
		resp, err := send(t, tr, w, 8)
		if err != nil || resp.StatusCode != a.status || len(tr.requests()) != 1 || len(w.waits) != 0 {
			t.Errorf("%d %s: got %v, %v after %d requests; want it returned at once", a.status, a.code, resp, err, len(tr.requests()))
		}
	}
}

func TestBusyRetryPolicyStopsWhenContextEnds(t *testing.T) {
	tr := &scriptedTransport{answers: []answer{{status: 409, code: "AnotherOperationInProgress"}}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &recordedWaits{cancel: cancel}
	if _, err := sendContext(ctx, t, tr, w, 8); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if n := len(tr.requests()); n != 1 {
		t.Errorf("%d requests after cancellation, want 1", n)
	}
}

func TestBusyRetryPolicyRefusesLongRetryAfter(t *testing.T) {
	tr := &scriptedTransport{answers: []answer{
		{status: 409, code: "AnotherOperationInProgress", headers: map[string]string{"Retry-After": "3600"}},
		{status: 200},
	}}
	w := &recordedWaits{}
	resp, err := send(t, tr, w, 8)
	if err != nil || resp.StatusCode != 409 || len(w.waits) != 0 {
		t.Errorf("got %v, %v, waits %v; want the 409 back without waiting an hour", resp, err, w.waits)
	}
}

func TestAzureRetriesThrottlingAndServerErrors(t *testing.T) {
	for _, a := range []answer{
		{status: 429, code: "TooManyRequests"},
		{status: 503},
		{status: 500, code: "InternalServerError"},
	} {
		tr := &scriptedTransport{answers: []answer{a, a, {status: 200}}}
		resp, err := send(t, tr, &recordedWaits{}, 8)
		if err != nil || resp.StatusCode != 200 || len(tr.requests()) != 3 {
			t.Errorf("%d %s: got %v, %v after %d requests; want 200 after 3", a.status, a.code, resp, err, len(tr.requests()))
		}
	}
}

func TestShouldRetry(t *testing.T) {
	untrusted := fmt.Errorf("Get: %w", x509.UnknownAuthorityError{})
	if shouldRetry(nil, untrusted) {
		t.Error("retries an untrusted certificate")
	}
	if !shouldRetry(nil, errors.New("connection reset by peer")) {
		t.Error("does not retry a connection reset")
	}
	if shouldRetry(&http.Response{StatusCode: 400, Body: http.NoBody}, nil) {
		t.Error("retries a 400")
	}
}

func TestRetryAfter(t *testing.T) {
	h := func(k, v string) *http.Response {
		return &http.Response{Header: http.Header{http.CanonicalHeaderKey(k): {v}}}
	}
	tests := []struct {
		resp *http.Response
		want time.Duration
	}{
		{h("Retry-After", "3"), 3 * time.Second},
		{h("retry-after-ms", "1500"), 1500 * time.Millisecond},
		{h("x-ms-retry-after-ms", "20"), 20 * time.Millisecond},
		{h("Retry-After", "soon"), 0},
		{&http.Response{Header: http.Header{}}, 0},
		{nil, 0},
	}
	for _, tt := range tests {
		if got := retryAfter(tt.resp); got != tt.want {
			t.Errorf("retryAfter(%v) = %v, want %v", tt.resp, got, tt.want)
		}
	}
}
