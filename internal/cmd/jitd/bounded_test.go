package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
)

// forEachNSG runs at most concurrency calls at once, every NSG once, and
// reports the NSGs not begun when the context ends as skipped.
func TestForEachNSG(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ids := make([]string, 10)
		for i := range ids {
			ids[i] = fmt.Sprint("nsg-", i)
		}
		var mu sync.Mutex
		running, most := 0, 0
		release := make(chan struct{})
		calls := make([]int, len(ids))
		done := make(chan struct{})
		go func() {
			forEachNSG(t.Context(), ids, 3, func(_ context.Context, i int, id string) {
				mu.Lock()
				running++
				most = max(most, running)
				calls[i]++
				mu.Unlock()
				<-release
				mu.Lock()
				running--
				mu.Unlock()
			}, func(i int, id string, err error) { t.Errorf("%s skipped: %v", id, err) })
			close(done)
		}()
		synctest.Wait()
		if running != 3 {
			t.Errorf("%d calls at once, want 3", running)
		}
		close(release)
		<-done
		for i, n := range calls {
			if n != 1 {
				t.Errorf("%s called %d times", ids[i], n)
			}
		}
		if most != 3 {
			t.Errorf("at most %d calls at once, want 3", most)
		}

		// The context ends while the first call holds the only slot: the
		// others are skipped, not called.
		ctx, cancel := context.WithCancel(t.Context())
		hold := make(chan struct{})
		var called, skipped []string
		finished := make(chan struct{})
		go func() {
			forEachNSG(ctx, ids[:3], 1, func(_ context.Context, _ int, id string) {
				called = append(called, id)
				cancel()
				<-hold
			}, func(_ int, id string, err error) {
				if errors.Is(err, context.Canceled) {
					skipped = append(skipped, id)
				}
			})
			close(finished)
		}()
		synctest.Wait()
		close(hold)
		<-finished
		if fmt.Sprint(called) != "[nsg-0]" || fmt.Sprint(skipped) != "[nsg-1 nsg-2]" {
			t.Errorf("called %v, skipped %v; want [nsg-0], [nsg-1 nsg-2]", called, skipped)
		}
	})
}
