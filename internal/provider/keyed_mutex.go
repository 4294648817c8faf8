package provider

import (
	"strings"
	"sync"
)

// keyedMutex is one mutex per key (a lower-cased NSG id), created on demand.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*sync.Mutex
}

func newKeyedMutex() *keyedMutex { return &keyedMutex{locks: map[string]*sync.Mutex{}} }

// Lock locks key and returns its unlock function.
func (k *keyedMutex) Lock(key string) func() {
	key = strings.ToLower(key)
	k.mu.Lock()
	m := k.locks[key]
	if m == nil {
		m = &sync.Mutex{}
		k.locks[key] = m
	}
	k.mu.Unlock()
	m.Lock()
	return m.Unlock
}
