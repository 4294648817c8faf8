package azuresim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/google/uuid"
)

// This file models Network Watcher instances (Microsoft.Network/
// networkWatchers) as far as IP flow verify needs them. Azure allows one
// watcher per subscription and region, and IP flow verify must be asked of
// the watcher in the target VM's region. Azure also enables Network Watcher
// by itself: when a virtual network is created in a region without a
// watcher it creates NetworkWatcher_<region> in the resource group
// NetworkWatcherRG. The local Azure shows that watcher for every region
// that has a virtual network and no watcher of its own, until it is
// deleted; a watcher may also be created explicitly (PUT, completing at
// once as on Azure). The watchers carry no properties beyond their state.

const (
	watcherType = "Microsoft.Network/networkWatchers"
	// autoWatcherGroup is the resource group of the watchers Azure enables
	// by itself, named NetworkWatcher_<region>.
	autoWatcherGroup  = "NetworkWatcherRG"
	autoWatcherPrefix = "NetworkWatcher_"
)

// watcherState is a network watcher as stored, or an automatic one.
type watcherState struct {
	id, sub, rg, name, location, etag string
	top                               map[string]json.RawMessage // unmodelled members (tags)
}

func watcherKey(sub, rg, name string) string { return "nw:" + nsgKey(sub, rg, name) }

func watcherID(sub, rg, name string) string {
	return resourceID(sub, rg, "Microsoft.Network/networkWatchers", name)
}

// optOutKey is the key of watcherOptOut: a region of a subscription whose
// automatic watcher was deleted.
func optOutKey(sub, location string) string {
	return strings.ToLower(sub) + "/" + normaliseLocation(location)
}

// watcherOptedOut reports whether an automatic watcher of the subscription
// was deleted. Callers hold s.mu.
func (s *Server) watcherOptedOut(sub string) bool {
	for k := range s.watcherOptOut {
		if strings.HasPrefix(k, strings.ToLower(sub)+"/") {
			return true
		}
	}
	return false
}

// hasVNets reports whether the subscription holds a virtual network.
// Callers hold s.mu.
func (s *Server) hasVNets(sub string) bool {
	prefix := "vnet:" + strings.ToLower(sub) + "/"
	for k := range s.vnets {
		if strings.HasPrefix(k, prefix) {
			return true
		}
	}
	return false
}

// watcherStates returns every watcher of the subscription, explicit or
// automatic, sorted by id. Callers hold s.mu.
func (s *Server) watcherStates(sub string) []*watcherState {
	var out []*watcherState
	regions := map[string]bool{}
	for _, w := range s.watchers {
		if strings.EqualFold(w.sub, sub) {
			out = append(out, w)
			regions[normaliseLocation(w.location)] = true
		}
	}
	for _, v := range netStates(s, s.vnets, false) {
		loc := normaliseLocation(v.location)
		if !strings.EqualFold(v.sub, sub) || regions[loc] || s.watcherOptOut[optOutKey(sub, loc)] {
			continue
		}
		regions[loc] = true
		name := autoWatcherPrefix + loc
		out = append(out, &watcherState{id: watcherID(v.sub, autoWatcherGroup, name), sub: v.sub, rg: autoWatcherGroup, name: name, location: loc,
			etag: `W/"auto-` + loc + `"`})
	}
	slices.SortFunc(out, func(a, b *watcherState) int { return strings.Compare(strings.ToLower(a.id), strings.ToLower(b.id)) })
	return out
}

// lookupWatcher finds a watcher by subscription, resource group and name.
// Callers hold s.mu.
func (s *Server) lookupWatcher(sub, rg, name string) *watcherState {
	for _, w := range s.watcherStates(sub) {
		if strings.EqualFold(w.rg, rg) && strings.EqualFold(w.name, name) {
			return w
		}
	}
	return nil
}

func (s *Server) watcherJSON(w *watcherState) map[string]any {
	doc := make(map[string]any, len(w.top)+6)
	for k, v := range w.top {
		doc[k] = v
	}
	doc["id"], doc["name"], doc["type"], doc["location"], doc["etag"] = w.id, w.name, watcherType, w.location, w.etag
	doc["properties"] = map[string]any{"provisioningState": statusSucceeded}
	return doc
}

func (s *Server) getWatcher(w http.ResponseWriter, _ *http.Request, q armRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	nw := s.lookupWatcher(q.sub, q.rg, q.watcher)
	if nw == nil {
		notFoundResource(w, watcherType, q.watcher, q.rg)
		return
	}
	writeWithETag(w, nw.etag, s.watcherJSON(nw))
}

func (s *Server) listWatchers(w http.ResponseWriter, r *http.Request, q armRequest) {
	s.writeList(w, r, func() ([]any, bool) {
		var items []any
		for _, nw := range s.watcherStates(q.sub) {
			if q.rg == "" || strings.EqualFold(nw.rg, q.rg) {
				items = append(items, s.watcherJSON(nw))
			}
		}
		return items, true
	})
}

// putWatcher creates or updates a watcher at once. A second watcher in a
// region is refused, as Azure refuses it.
func (s *Server) putWatcher(w http.ResponseWriter, r *http.Request, q armRequest) {
	raw, ok := readRawBody(w, r)
	if !ok {
		return
	}
	var body struct {
		Location string `json:"location"`
	}
	if aerr := decodeJSON(raw, &body); aerr != nil {
		writeARMErrorBody(w, http.StatusBadRequest, aerr)
		return
	}
	top, _, aerr := splitBody(raw)
	if aerr != nil {
		writeARMErrorBody(w, http.StatusBadRequest, aerr)
		return
	}
	if !validName(q.watcher) {
		writeARMErrorBody(w, http.StatusBadRequest, invalidNameError(q.watcher))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.watchers[watcherKey(q.sub, q.rg, q.watcher)]
	next := &watcherState{sub: q.sub, rg: s.groupName(q.sub, q.rg), name: q.watcher, location: body.Location, top: keepUnmodelled(top, nsgComputed)}
	etag := ""
	if cur != nil {
		next.rg, next.name, etag = cur.rg, cur.name, cur.etag
		if aerr := sameLocation(cur.name, cur.rg, cur.location, &next.location); aerr != nil {
			writeARMErrorBody(w, http.StatusBadRequest, aerr)
			return
		}
	}
	if !checkPreconditions(w, r, etag) {
		return
	}
	if next.location == "" {
		writeARMError(w, http.StatusBadRequest, "LocationRequired", "The location property is required for this definition.")
		return
	}
	next.location = normaliseLocation(next.location)
	for _, other := range s.watcherStates(q.sub) {
		if other != cur && normaliseLocation(other.location) == next.location {
			writeARMError(w, http.StatusBadRequest, "NetworkWatcherCountLimitReached", fmt.Sprintf(
				"Cannot create more than 1 network watchers for this subscription in this region. Network watcher %s already exists in region %s.", other.id, next.location))
			return
		}
	}
	next.id, next.etag = watcherID(next.sub, next.rg, next.name), newETag()
	if s.watchers == nil {
		s.watchers = map[string]*watcherState{}
	}
	s.watchers[watcherKey(q.sub, q.rg, q.watcher)] = next
	delete(s.watcherOptOut, optOutKey(q.sub, next.location))
	s.ensureGroup(next.sub, next.rg, next.location)
	w.Header().Set("ETag", next.etag)
	writeJSON(w, putStatus(cur == nil), s.watcherJSON(next))
}

// deleteWatcher deletes a watcher through an operation that is done at
// once. Deleting an automatic watcher keeps its region without one.
func (s *Server) deleteWatcher(w http.ResponseWriter, r *http.Request, q armRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	nw := s.lookupWatcher(q.sub, q.rg, q.watcher)
	if nw == nil {
		writeDeleteAbsent(w, r)
		return
	}
	if !checkPreconditions(w, r, nw.etag) {
		return
	}
	if s.watchers[watcherKey(q.sub, q.rg, q.watcher)] != nil {
		delete(s.watchers, watcherKey(q.sub, q.rg, q.watcher))
	} else {
		if s.watcherOptOut == nil {
			s.watcherOptOut = map[string]bool{}
		}
		s.watcherOptOut[optOutKey(q.sub, nw.location)] = true
	}
	s.writeDeleteAccepted(w, r, q, s.doneOperation("DeleteNetworkWatcherOperation", nw.id, nw.location, nil))
}

// doneOperation records an operation that has already succeeded, for an
// answer Azure gives as a long-running operation although the simulator
// decides it at once. Callers hold s.mu.
func (s *Server) doneOperation(name, resourceID, location string, result any) *operation {
	now := s.now()
	op := &operation{
		id: uuid.NewString(), name: name, resourceID: resourceID, location: normaliseLocation(location),
		accepted: now, due: now, status: statusSucceeded, result: result, event: -1,
	}
	s.pruneOperations(now)
	s.ops[op.id] = op
	return op
}

// checkWatcherFor finds the watcher an IP flow verify names and checks it
// serves the target's region; it returns the status and error to answer,
// or nil. Callers hold s.mu.
func (s *Server) checkWatcherFor(q armRequest, targetLocation string) (int, *armError) {
	nw := s.lookupWatcher(q.sub, q.rg, q.watcher)
	if nw == nil {
		return http.StatusNotFound, &armError{Code: "ResourceNotFound", Message: fmt.Sprintf(
			"The Resource '%s/%s' under resource group '%s' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix", watcherType, q.watcher, q.rg)}
	}
	if normaliseLocation(nw.location) != normaliseLocation(targetLocation) {
		// Azure's code for this refusal is not documented; the message
		// says what it means.
		return http.StatusBadRequest, &armError{Code: "InvalidTargetResourceLocation", Message: fmt.Sprintf(
			"Network watcher %s is in region %s; the target resource is in region %s. Use the network watcher of the target's region.", nw.id, nw.location, normaliseLocation(targetLocation))}
	}
	return 0, nil
}
