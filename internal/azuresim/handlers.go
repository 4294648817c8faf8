package azuresim

import "net/http"

// Steps shared by the request handlers of every resource type, so that NSGs,
// security rules, virtual networks, subnets and network interfaces answer
// conditional requests, concurrent writes, absent resources and lists alike,
// as ARM does for all of them.

// writable applies the request's preconditions to etag (empty when the
// resource does not exist), then refuses the write if running, the operation
// the resource is busy with, is not nil. Preconditions come first, as on
// Azure, so a stale If-Match fails with 412 even on a busy resource.
func (s *Server) writable(w http.ResponseWriter, r *http.Request, q armRequest, etag string, running *operation, attempted string) bool {
	if !checkPreconditions(w, r, etag) {
		return false
	}
	if running != nil {
		s.writeBusy(w, r, q, running, attempted)
		return false
	}
	return true
}

// nsgWritable is writable for a write to an NSG or one of its rules, whose
// busy answer depends on the server's BusyMode: BusyRefuse refuses it while
// e runs an operation, as writable does; BusyQueue accepts it into the
// NSG's queue (startOperation then runs it after the writes before it) and
// refuses it only when the queue holds WriteQueue writes already.
func (s *Server) nsgWritable(w http.ResponseWriter, r *http.Request, q armRequest, etag string, e *nsgEntry, attempted string) bool {
	running := e.running()
	if s.busyMode == BusyRefuse || running == nil {
		return s.writable(w, r, q, etag, running, attempted)
	}
	if !checkPreconditions(w, r, etag) {
		return false
	}
	if len(e.queue) >= s.writeQueue {
		s.counters.queueFull++
		s.writeBusy(w, r, q, running, attempted)
		return false
	}
	s.counters.queued++
	return true
}

// childETag is what a PUT of the child at index i of its parent checks
// preconditions against: children share their parent's ETag, as on Azure,
// and a child that does not exist yet (i < 0) has none.
func childETag(parentETag string, i int) string {
	if i < 0 {
		return ""
	}
	return parentETag
}

// putStatus is a PUT's status: 201 when it creates the resource.
func putStatus(created bool) int {
	if created {
		return http.StatusCreated
	}
	return http.StatusOK
}

// writeDeleteAbsent answers the DELETE of a resource that does not exist:
// 204 at once, unless a precondition demands that it exists.
func writeDeleteAbsent(w http.ResponseWriter, r *http.Request) {
	if checkPreconditions(w, r, "") {
		w.WriteHeader(http.StatusNoContent)
	}
}

// childDeletable starts the DELETE of the child at index i of its parent
// (a security rule, a subnet), answering for it when the child does not
// exist or the write is refused.
func (s *Server) childDeletable(w http.ResponseWriter, r *http.Request, q armRequest, parentETag string, i int, running *operation, attempted string) bool {
	if i < 0 {
		writeDeleteAbsent(w, r)
		return false
	}
	return s.writable(w, r, q, parentETag, running, attempted)
}

// ruleDeletable is childDeletable for a security rule of the NSG e.
func (s *Server) ruleDeletable(w http.ResponseWriter, r *http.Request, q armRequest, parentETag string, i int, e *nsgEntry, attempted string) bool {
	if i < 0 {
		writeDeleteAbsent(w, r)
		return false
	}
	return s.nsgWritable(w, r, q, parentETag, e, attempted)
}

// writeWithETag answers a GET with the resource and its ETag header.
func writeWithETag(w http.ResponseWriter, etag string, doc any) {
	w.Header().Set("ETag", etag)
	writeJSON(w, http.StatusOK, doc)
}

// writeList answers one page of the items collect returns under s.mu; collect
// reports false when it has answered the request itself (a missing parent).
// The page is written after s.mu is released, as rendering is all that needs
// the lock.
func (s *Server) writeList(w http.ResponseWriter, r *http.Request, collect func() ([]any, bool)) {
	s.mu.Lock()
	items, ok := collect()
	pageSize := s.pageSize
	s.mu.Unlock()
	if ok {
		writePage(w, r, orEmpty(items), pageSize)
	}
}
