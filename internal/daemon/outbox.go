package daemon

import "sync"

// outbox hands the outcomes of work done outside the daemon's loop
// (verifications, close writes) back to it: a worker delivers, the loop
// waits on ready and takes everything delivered so far. ready holds at most
// one signal, so a burst of deliveries wakes the loop once.
type outbox[T any] struct {
	ready chan struct{}

	mu   sync.Mutex
	done []T
}

func newOutbox[T any]() outbox[T] { return outbox[T]{ready: make(chan struct{}, 1)} }

// deliver queues one outcome and wakes the loop.
func (o *outbox[T]) deliver(v T) {
	o.mu.Lock()
	o.done = append(o.done, v)
	o.mu.Unlock()
	select {
	case o.ready <- struct{}{}:
	default:
	}
}

// take returns every outcome delivered since the last take.
func (o *outbox[T]) take() []T {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := o.done
	o.done = nil
	return out
}
