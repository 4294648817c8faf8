package azuresim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/jitaccess/terraform-provider-jit/internal/azuresim/nsgrules"
)

// Steps shared by the request handlers of every resource type, so that NSGs,
// security rules, virtual networks, subnets and network interfaces read
// bodies, answer absent resources, accepted writes and lists alike, as ARM
// does for all of them.

// validName applies Azure's resource name rule, which NSGs and resource
// groups share with security rules. nsgrules checks the name before anything
// else, so any other failure of this otherwise empty rule means the name is
// fine.
func validName(name string) bool {
	err := nsgrules.ValidateRule("", nsgrules.Rule{Name: name}, nil)
	return err == nil || err.Code != nsgrules.CodeInvalidResourceName
}

func invalidNameError(name string) *armError {
	return &armError{Code: "InvalidResourceName", Message: fmt.Sprintf(
		"Resource name %s is invalid. The name can be up to 80 characters long. It must begin with a word character, and it must end with a word character or with '_'. The name may contain word characters or '.', '-', '_'.", name)}
}

// readBody reads a JSON request body into v, answering 400
// InvalidRequestFormat when it does not decode.
func readBody(w http.ResponseWriter, r *http.Request, v any) bool {
	raw, ok := readRawBody(w, r)
	if !ok {
		return false
	}
	if err := decodeJSON(raw, v); err != nil {
		writeARMErrorBody(w, http.StatusBadRequest, err)
		return false
	}
	return true
}

// writePage answers one page of a list, with a nextLink to the rest.
func writePage(w http.ResponseWriter, r *http.Request, items []any, pageSize int) {
	start, _ := strconv.Atoi(r.URL.Query().Get("$skiptoken"))
	start = min(max(start, 0), len(items))
	end := min(start+pageSize, len(items))
	body := map[string]any{"value": items[start:end]}
	if end < len(items) {
		q := r.URL.Query()
		q.Set("$skiptoken", strconv.Itoa(end))
		u := url.URL{Scheme: "https", Host: r.Host, Path: r.URL.Path, RawQuery: q.Encode()}
		body["nextLink"] = u.String()
	}
	writeJSON(w, http.StatusOK, body)
}

// writeAccepted answers a PUT whose operation was started: the resource as
// it is now, with the polling headers.
func (s *Server) writeAccepted(w http.ResponseWriter, r *http.Request, q armRequest, op *operation, status int, body any) {
	asyncOp, _ := s.asyncURLs(r, op, q.apiVersion)
	w.Header().Set("Azure-AsyncOperation", asyncOp)
	w.Header().Set("x-ms-request-id", op.id)
	s.recordWriteIDs(w, op)
	setRetryAfter(w.Header(), op.due.Sub(s.now()))
	writeJSON(w, status, body)
}

// recordWriteIDs keeps the ids a write is answered with in its event.
// s.mu is held.
func (s *Server) recordWriteIDs(w http.ResponseWriter, op *operation) {
	if op.event >= 0 && op.event < len(s.events) {
		s.events[op.event].CorrelationRequestID = w.Header().Get("x-ms-correlation-request-id")
		s.events[op.event].RequestID = w.Header().Get("x-ms-request-id")
	}
}

// writeDeleteAccepted answers a DELETE whose operation was started.
func (s *Server) writeDeleteAccepted(w http.ResponseWriter, r *http.Request, q armRequest, op *operation) {
	asyncOp, loc := s.asyncURLs(r, op, q.apiVersion)
	w.Header().Set("Azure-AsyncOperation", asyncOp)
	w.Header().Set("Location", loc)
	w.Header().Set("x-ms-request-id", op.id)
	s.recordWriteIDs(w, op)
	setRetryAfter(w.Header(), op.due.Sub(s.now()))
	w.WriteHeader(http.StatusAccepted)
}

func readRawBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes))
	if err != nil {
		writeARMError(w, http.StatusBadRequest, "InvalidRequestFormat", "Cannot read the request body.")
		return nil, false
	}
	return b, true
}

// decodeJSON decodes a request body, describing a failure as ARM does.
func decodeJSON(raw []byte, v any) *armError {
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = []byte("x") // report an empty body as unparseable
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return &armError{
			Code: "InvalidRequestFormat", Message: "Cannot parse the request.",
			Details: []armError{{Code: "InvalidJson", Message: "Error parsing the request body: " + err.Error()}},
		}
	}
	return nil
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

// armHandler answers one kind of ARM request.
type armHandler func(s *Server, w http.ResponseWriter, r *http.Request, q armRequest)

func notFoundResource(w http.ResponseWriter, typ, name, rg string) {
	writeARMError(w, http.StatusNotFound, "ResourceNotFound",
		fmt.Sprintf("The Resource '%s/%s' under resource group '%s' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix", typ, name, rg))
}

// splitBody decodes a resource body into its top-level members and its
// properties, for keeping unmodelled members verbatim.
func splitBody(raw []byte) (top, props map[string]json.RawMessage, err *armError) {
	if err := decodeJSON(raw, &top); err != nil {
		return nil, nil, err
	}
	if p, ok := top["properties"]; ok && string(p) != "null" {
		if err := decodeJSON(p, &props); err != nil {
			return nil, nil, err
		}
	}
	return top, props, nil
}

func keepUnmodelled(m map[string]json.RawMessage, computed map[string]bool) map[string]json.RawMessage {
	out := map[string]json.RawMessage{}
	for k, v := range m {
		if !computed[k] {
			out[k] = v
		}
	}
	return out
}

func nameMismatch(body, uri string) *armError {
	return &armError{Code: "InvalidRequestFormat", Message: fmt.Sprintf(
		"Resource name '%s' in the request body does not match the name '%s' in the request URI.", body, uri)}
}

func orEmpty(items []any) []any {
	if items == nil {
		return []any{}
	}
	return items
}
