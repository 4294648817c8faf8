package audit

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestFileAppendsOneLinePerEventUnderConcurrency(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	a, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := OpenFile(path) // a second writer, as a second process would be
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Date(2026, 11, 24, 10, 0, 0, 0, time.FixedZone("CET", 3600))
	var wg sync.WaitGroup
	for i := range 50 {
		sink := Sink(a)
		if i%2 == 1 {
			sink = b
		}
		wg.Go(func() {
			err := sink.Emit(context.Background(), Event{Time: exp, Action: ActionOpen, Result: ResultSuccess,
				Actor: "test", GrantID: "g" + strings.Repeat("x", i%7), Ports: []string{"22/Tcp"}, ExpiresAt: exp})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	events, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 50 {
		t.Fatalf("read %d events, want 50", len(events))
	}
	for _, e := range events {
		if e.Action != ActionOpen || e.ExpiresAt.Location() != time.UTC || !e.ExpiresAt.Equal(exp) {
			t.Fatalf("event read back wrong: %+v", e)
		}
	}
}

func TestMarshalOmitsWhatDoesNotApply(t *testing.T) {
	line, err := Marshal(Event{Time: time.Unix(0, 0), Action: ActionFind, Result: ResultSuccess, Actor: "jitd", Kind: "bypass"})
	if err != nil {
		t.Fatal(err)
	}
	got := string(line)
	if !strings.HasSuffix(got, "\n") || strings.Count(got, "\n") != 1 {
		t.Fatalf("not one line: %q", got)
	}
	for _, absent := range []string{"grant_id", "expires_at", "nsg_ids", "requester"} {
		if strings.Contains(got, absent) {
			t.Errorf("%s should be omitted: %s", absent, got)
		}
	}
}

func TestOpenFileRefusesAnUnwritablePath(t *testing.T) {
	if _, err := OpenFile(filepath.Join(t.TempDir(), "missing-dir", "audit.jsonl")); err == nil {
		t.Fatal("want an error for a path in a missing directory")
	}
}
