package azuresim

import (
	"crypto/tls"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// tokenBucket is ARM's per-subscription write limit: each write takes a
// token; tokens refill at rate per second up to burst.
type tokenBucket struct {
	rate   float64 // 0: unlimited
	burst  float64
	tokens float64
	last   time.Time
}

// defaultWriteBurst is ARM's subscription write bucket size.
const defaultWriteBurst = 200

func newTokenBucket(rate float64, burst int, now time.Time) tokenBucket {
	if burst <= 0 {
		burst = defaultWriteBurst
	}
	return tokenBucket{rate: rate, burst: float64(burst), tokens: float64(burst), last: now}
}

// take refills the bucket and takes one token. It returns the tokens left
// and, when none was available, how long until one is.
func (b *tokenBucket) take(now time.Time) (remaining int, wait time.Duration) {
	if b.rate <= 0 {
		return int(b.burst), 0
	}
	b.tokens = math.Min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	if b.tokens < 1 {
		return 0, time.Duration((1 - b.tokens) / b.rate * float64(time.Second))
	}
	b.tokens--
	return int(b.tokens), 0
}

// takeWriteToken applies the subscription write limit. Every write answer
// carries x-ms-ratelimit-remaining-subscription-writes, as on ARM.
func (s *Server) takeWriteToken(w http.ResponseWriter) bool {
	s.mu.Lock()
	remaining, wait := s.bucket.take(s.now())
	if wait > 0 {
		s.counters.throttled++
	}
	s.mu.Unlock()
	w.Header().Set("x-ms-ratelimit-remaining-subscription-writes", strconv.Itoa(remaining))
	if wait == 0 {
		return true
	}
	setRetryAfter(w.Header(), wait)
	writeARMError(w, http.StatusTooManyRequests, "SubscriptionRequestsThrottled",
		fmt.Sprintf("Number of 'write' requests for subscription '%s' actor '%s' exceeded. Please try again after '%d' seconds after additional tokens are available. Refer to https://aka.ms/arm-throttling",
			s.subscriptionID, servicePrincipalObjectID, int(math.Ceil(wait.Seconds()))))
	return false
}

// Fault kinds the simulator injects.
const (
	FaultInternalError = "500"
	FaultUnavailable   = "503"
	FaultThrottle      = "429"
	FaultReset         = "reset"
	FaultFailedLRO     = "failed-lro"
)

// injectFault decides, deterministically from FaultSeed, whether this ARM
// request fails and how. A failed long-running operation is only chosen for
// writes that start one; the request then proceeds and its operation ends
// Failed without applying the change. It reports whether it answered.
func (s *Server) injectFault(w http.ResponseWriter, q *armRequest) bool {
	s.mu.Lock()
	if s.faultRate <= 0 || s.rng.Float64() >= s.faultRate {
		s.mu.Unlock()
		return false
	}
	kinds := []string{FaultInternalError, FaultUnavailable, FaultThrottle, FaultReset}
	if q.lro {
		kinds = append(kinds, FaultFailedLRO)
	}
	kind := kinds[s.rng.IntN(len(kinds))]
	s.counters.faults[kind]++
	s.mu.Unlock()

	switch kind {
	case FaultFailedLRO:
		q.failLRO = true
		return false
	case FaultInternalError:
		writeARMError(w, http.StatusInternalServerError, "InternalServerError", "An internal server error occurred. Please retry the request.")
	case FaultUnavailable:
		w.Header().Set("Retry-After", "1")
		writeARMError(w, http.StatusServiceUnavailable, "ServiceUnavailable", "The service is temporarily unavailable. Please retry the request.")
	case FaultThrottle:
		setRetryAfter(w.Header(), 100*time.Millisecond)
		writeARMError(w, http.StatusTooManyRequests, "TooManyRequests", "The request is being throttled. Please retry the request.")
	case FaultReset:
		resetConnection(w)
	}
	return true
}

// resetConnection hijacks the connection and closes it with SO_LINGER 0, so
// the client sees a TCP reset instead of a response.
func resetConnection(w http.ResponseWriter) {
	if rec, ok := w.(*statusRecorder); ok {
		rec.hijacked = true
	}
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// Cannot hijack (should not happen on HTTP/1.1): fail loudly instead.
		writeARMError(w, http.StatusBadGateway, "BadGateway", "The connection was reset.")
		return
	}
	raw := conn
	if tc, ok := conn.(*tls.Conn); ok {
		raw = tc.NetConn()
	}
	if tcp, ok := raw.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0)
	}
	_ = raw.Close()
}

// ARM's read limits since its 2024 throttling model: a token bucket per
// subscription and region (of the ARM instance serving the caller; the
// local Azure is one region) holding 250 reads, refilled at 25 per second
// (learn.microsoft.com, azure-resource-manager/management/
// request-limits-and-throttling). Off unless Options.ReadRate is set.
const (
	DefaultReadRate  = 25
	DefaultReadBurst = 250
)

// readLimiter holds the read buckets by subscription (tenant-level reads,
// such as GET /subscriptions, share the "" bucket). Its zero value is off.
type readLimiter struct {
	mu        sync.Mutex
	rate      float64 // 0: unlimited
	burst     int
	buckets   map[string]*tokenBucket
	throttled int64
}

func newReadLimiter(rate float64, burst int) *readLimiter {
	if burst <= 0 {
		burst = DefaultReadBurst
	}
	return &readLimiter{rate: rate, burst: burst}
}

func (l *readLimiter) throttledCount() int64 {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.throttled
}

// takeReadToken applies the read limit of the request's subscription.
// Every read answer carries x-ms-ratelimit-remaining-subscription-reads
// when the limit is on, as on ARM; a read over the limit gets 429
// SubscriptionRequestsThrottled with Retry-After.
func (s *Server) takeReadToken(w http.ResponseWriter, subscription string) bool {
	l := s.reads
	if l == nil {
		return true
	}
	now := s.now()
	l.mu.Lock()
	if l.rate <= 0 {
		l.mu.Unlock()
		return true
	}
	key := strings.ToLower(subscription)
	if l.buckets == nil {
		l.buckets = map[string]*tokenBucket{}
	}
	b := l.buckets[key]
	if b == nil {
		nb := newTokenBucket(l.rate, l.burst, now)
		b = &nb
		l.buckets[key] = b
	}
	remaining, wait := b.take(now)
	if wait > 0 {
		l.throttled++
	}
	l.mu.Unlock()
	w.Header().Set("x-ms-ratelimit-remaining-subscription-reads", strconv.Itoa(remaining))
	if wait == 0 {
		return true
	}
	setRetryAfter(w.Header(), wait)
	writeARMError(w, http.StatusTooManyRequests, "SubscriptionRequestsThrottled",
		fmt.Sprintf("Number of 'read' requests for subscription '%s' actor '%s' exceeded. Please try again after '%d' seconds after additional tokens are available. Refer to https://aka.ms/arm-throttling",
			subscription, servicePrincipalObjectID, int(math.Ceil(wait.Seconds()))))
	return false
}
