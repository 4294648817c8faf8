package azuresim

import (
	"strconv"
	"testing"
)

// Cut connections are forgotten oldest first beyond the bound, and the
// order of ended ids does not grow without bound when clients close them.
func TestEndedConnectionsAreBounded(t *testing.T) {
	tab := newConnectionTable()
	cut := func(id string) {
		c := &connection{state: ConnectionState{ID: id}}
		tab.live[id] = c
		tab.end(c)
	}
	for i := range maxEndedConnections + 1 {
		cut(strconv.Itoa(i))
	}
	if len(tab.ended) != maxEndedConnections || tab.ended["0"] != nil || tab.ended["1"] == nil || len(tab.live) != 0 {
		t.Fatalf("after %d cuts: %d remembered, oldest kept: %v", maxEndedConnections+1, len(tab.ended), tab.ended["0"] != nil)
	}
	// A client that reads and closes every cut connection keeps the table
	// small.
	for i := range 3 * maxEndedConnections {
		id := "closed-" + strconv.Itoa(i)
		cut(id)
		delete(tab.ended, id) // as CloseConnection does
	}
	if len(tab.endedOrder) > 2*maxEndedConnections+1 {
		t.Errorf("ended order holds %d ids, want at most %d", len(tab.endedOrder), 2*maxEndedConnections+1)
	}
}
