package azure

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
)

// retryableStatus are the statuses azcore retries by default; they are
// listed here because shouldRetry replaces azcore's own check.
var retryableStatus = map[int]bool{
	http.StatusRequestTimeout:      true,
	http.StatusTooManyRequests:     true,
	http.StatusInternalServerError: true,
	http.StatusBadGateway:          true,
	http.StatusServiceUnavailable:  true,
	http.StatusGatewayTimeout:      true,
}

// shouldRetry is azcore's retry predicate. It retries what azcore retries,
// except:
//   - busy-NSG answers, which busyRetryPolicy has already retried with its
//     own budget (retrying them here again would multiply the two budgets);
//   - certificate and unknown-host errors, which no retry can fix and which
//     would otherwise keep a user waiting minutes for a configuration error.
func shouldRetry(resp *http.Response, err error) bool {
	if err != nil {
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
			return false
		}
		return !isCertificateError(err)
	}
	if isBusy(resp) {
		return false
	}
	return retryableStatus[resp.StatusCode]
}

// isBusy reports whether a response says the NSG is busy with another
// write: 409 AnotherOperationInProgress or 429
// RetryableErrorDueToAnotherOperation. ARM serialises writes per NSG, so
// such a write succeeds once the other one ends.
func isBusy(resp *http.Response) bool {
	if resp == nil || (resp.StatusCode != http.StatusConflict && resp.StatusCode != http.StatusTooManyRequests) {
		return false
	}
	code := resp.Header.Get("x-ms-error-code")
	if code == "" {
		body, err := runtime.Payload(resp)
		if err != nil {
			return false
		}
		var env armErrorBody
		if json.Unmarshal(body, &env) != nil || env.Error == nil {
			return false
		}
		code = env.Error.Code
	}
	return code == codeAnotherOperationInProgress || code == codeRetryableErrorDueToAnotherOperation
}

// busyRetryPolicy retries writes that Azure refused because another write
// holds the NSG. It runs once per azcore try, after authentication, so its
// retries spend neither azcore's retry budget nor a new token.
type busyRetryPolicy struct {
	maxRetries int
	backoff    backoff
	// wait blocks for d or until ctx is done; tests replace it to observe
	// the delays without sleeping.
	wait func(ctx context.Context, d time.Duration) error
}

func (p *busyRetryPolicy) Do(req *policy.Request) (*http.Response, error) {
	ctx := req.Raw().Context()
	for attempt := 0; ; attempt++ {
		if err := req.RewindBody(); err != nil {
			return nil, fmt.Errorf("rewinding the request body for a retry: %w", err)
		}
		resp, err := req.Next()
		if err != nil || attempt >= p.maxRetries {
			return resp, err
		}
		if !isBusy(resp) {
			return resp, nil
		}
		delay, ok := p.backoff.delay(resp, attempt)
		if !ok {
			return resp, nil
		}
		// The body has been read by the pipeline already; closing it
		// returns the connection to the pool.
		resp.Body.Close()
		if err := p.wait(ctx, delay); err != nil {
			return nil, err
		}
	}
}

// backoff computes retry delays: the server's Retry-After when it gives one,
// otherwise exponential from base with jitter, capped at max.
type backoff struct {
	base, max time.Duration
}

// delay returns how long to wait before retry number attempt+1, and false
// when the server asks for a longer wait than max (azcore gives up then
// too: such a server is not coming back soon).
func (b backoff) delay(resp *http.Response, attempt int) (time.Duration, bool) {
	if d := retryAfter(resp); d > 0 {
		return d, d <= b.max
	}
	d := b.base
	for i := 0; i < attempt && d < b.max; i++ {
		d *= 2
	}
	// Jitter in [0.8, 1.3) keeps two clients that collided from colliding
	// again on the next try.
	d = time.Duration(float64(d) * (0.8 + rand.Float64()/2))
	return min(d, b.max), true
}

// retryAfter reads the server's requested delay from retry-after-ms,
// x-ms-retry-after-ms or Retry-After (seconds or an HTTP date); 0 if none.
func retryAfter(resp *http.Response) time.Duration {
	if resp == nil {
		return 0
	}
	for _, h := range []string{"retry-after-ms", "x-ms-retry-after-ms"} {
		if v := resp.Header.Get(h); v != "" {
			if ms, err := strconv.ParseInt(v, 10, 64); err == nil && ms > 0 {
				return time.Duration(ms) * time.Millisecond
			}
		}
	}
	v := resp.Header.Get("Retry-After")
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		return time.Duration(max(s, 0)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// waitContext sleeps for d unless ctx ends first.
func waitContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// correlationPolicy stamps every request of one Client with the same
// x-ms-correlation-request-id, so Azure support and the activity log can
// tie together everything one provider run or daemon did.
type correlationPolicy struct{ id string }

func (p correlationPolicy) Do(req *policy.Request) (*http.Response, error) {
	if req.Raw().Header.Get(headerCorrelationID) == "" {
		req.Raw().Header.Set(headerCorrelationID, p.id)
	}
	return req.Next()
}

const headerCorrelationID = "x-ms-correlation-request-id"
