package main

import (
	"context"
	"sync"
)

// forEachNSG is the bounded concurrent read of the commands that read a
// scope (jitd scan, status, verify): it calls fn for every NSG, at most
// concurrency at once, and skipped instead for each one not begun because
// ctx ended. It returns when every call has.
func forEachNSG(ctx context.Context, ids []string, concurrency int, fn func(ctx context.Context, i int, id string), skipped func(i int, id string, err error)) {
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	for i, id := range ids {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			skipped(i, id, ctx.Err())
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			fn(ctx, i, id)
		})
	}
	wg.Wait()
}
