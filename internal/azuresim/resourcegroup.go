package azuresim

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/google/uuid"
)

// resourceGroup is a group a client created or one that holds an NSG.
// Groups are implicit: creating an NSG in a group creates the group.
type resourceGroup struct {
	sub      string
	name     string
	location string
	tags     json.RawMessage
}

// ensureGroup records a resource group implicitly created by a resource
// put in it.
// Callers hold s.mu.
func (s *Server) ensureGroup(sub, rg, location string) {
	if key := scopeKey(sub, rg); s.groups[key] == nil {
		s.groups[key] = &resourceGroup{sub: s.sub(sub), name: rg, location: normaliseLocation(location)}
	}
}

// serveResourceGroup answers GET, HEAD, PUT and DELETE of a resource group.
func (s *Server) serveResourceGroup(w http.ResponseWriter, r *http.Request, q armRequest) {
	key := scopeKey(q.sub, q.rg)
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.mu.Lock()
		g := s.groups[key]
		s.mu.Unlock()
		if g == nil {
			if r.Method == http.MethodHead {
				w.WriteHeader(http.StatusNotFound)
				return
			}
			writeARMError(w, http.StatusNotFound, "ResourceGroupNotFound", fmt.Sprintf("Resource group '%s' could not be found.", q.rg))
			return
		}
		if r.Method == http.MethodHead {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		writeJSON(w, http.StatusOK, s.groupJSON(g))
	case http.MethodPut:
		var body struct {
			Location string          `json:"location"`
			Tags     json.RawMessage `json:"tags"`
		}
		if !readBody(w, r, &body) {
			return
		}
		if !validName(q.rg) {
			writeARMErrorBody(w, http.StatusBadRequest, invalidNameError(q.rg))
			return
		}
		s.mu.Lock()
		g, status := s.groups[key], http.StatusOK
		if g == nil {
			if body.Location == "" {
				s.mu.Unlock()
				writeARMError(w, http.StatusBadRequest, "LocationRequired", "The location property is required for this definition.")
				return
			}
			g, status = &resourceGroup{sub: q.sub, name: q.rg}, http.StatusCreated
			s.groups[key] = g
		}
		g.location = normaliseLocation(body.Location)
		g.tags = body.Tags
		doc := s.groupJSON(g)
		s.mu.Unlock()
		writeJSON(w, status, doc)
	case http.MethodDelete:
		s.deleteResourceGroup(w, r, q)
	default:
		w.Header().Set("Allow", "GET, HEAD, PUT, DELETE")
		writeARMError(w, http.StatusMethodNotAllowed, "MethodNotAllowed",
			fmt.Sprintf("The HTTP method '%s' is not supported for resource groups here.", r.Method))
	}
}

func (s *Server) listResourceGroups(w http.ResponseWriter, r *http.Request, q armRequest) {
	s.writeList(w, r, func() ([]any, bool) {
		var groups []*resourceGroup
		for _, g := range s.groups {
			if strings.EqualFold(g.sub, q.sub) {
				groups = append(groups, g)
			}
		}
		// Ids share their prefix, so sorting by name sorts by id.
		slices.SortFunc(groups, func(a, b *resourceGroup) int { return strings.Compare(a.name, b.name) })
		out := make([]any, len(groups))
		for i, g := range groups {
			out[i] = s.groupJSON(g)
		}
		return out, true
	})
}

func (s *Server) groupJSON(g *resourceGroup) map[string]any {
	doc := map[string]any{
		"id":         "/subscriptions/" + g.sub + "/resourceGroups/" + g.name,
		"name":       g.name,
		"type":       "Microsoft.Resources/resourceGroups",
		"location":   g.location,
		"properties": map[string]any{"provisioningState": statusSucceeded},
	}
	if len(g.tags) > 0 && string(g.tags) != "null" {
		doc["tags"] = g.tags
	}
	return doc
}

// groupExists is true for a group a client created or that holds a
// resource, and for the automatic network watchers' group once Azure has
// made it: with the first virtual network; it stays when its watchers are
// deleted. Callers hold s.mu.
func (s *Server) groupExists(sub, rg string) bool {
	if s.groups[scopeKey(sub, rg)] != nil {
		return true
	}
	if !strings.EqualFold(rg, autoWatcherGroup) {
		return false
	}
	return s.hasVNets(sub) || s.watcherOptedOut(sub) ||
		slices.ContainsFunc(s.watcherStates(sub), func(w *watcherState) bool { return strings.EqualFold(w.rg, rg) })
}

// requireGroup answers 404 ResourceGroupNotFound, as ARM does before it
// looks any further, when a read names a resource group that does not
// exist: a typo must not read as an empty group.
func (s *Server) requireGroup(w http.ResponseWriter, r *http.Request, q armRequest) bool {
	if q.rg == "" || q.kind == "resource-group" || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		return true
	}
	s.mu.Lock()
	ok := s.groupExists(q.sub, q.rg)
	s.mu.Unlock()
	if !ok {
		writeARMError(w, http.StatusNotFound, "ResourceGroupNotFound", fmt.Sprintf("Resource group '%s' could not be found.", q.rg))
	}
	return ok
}

// groupResource is one entry of a resource group's contents list.
type groupResource struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Type     string `json:"type"`
	Location string `json:"location"`
}

// groupResources lists what a resource group holds, sorted by id. Callers
// hold s.mu.
func (s *Server) groupResources(sub, rg string) []groupResource {
	var out []groupResource
	in := func(id, group string) bool { return strings.EqualFold(group, rg) && inSubscription(id, sub) }
	s.settleAll()
	for _, e := range s.nsgs {
		if st := e.visible(); st != nil && in(st.id, st.rg) {
			out = append(out, groupResource{st.id, st.name, "Microsoft.Network/networkSecurityGroups", normaliseLocation(st.location)})
		}
	}
	for _, v := range netStates(s, s.vnets, false) {
		if in(v.id, v.rg) {
			out = append(out, groupResource{v.id, v.name, "Microsoft.Network/virtualNetworks", normaliseLocation(v.location)})
		}
	}
	for _, n := range netStates(s, s.nics, false) {
		if in(n.id, n.rg) {
			out = append(out, groupResource{n.id, n.name, "Microsoft.Network/networkInterfaces", normaliseLocation(n.location)})
		}
	}
	for _, v := range s.vmStates() {
		if in(v.id, v.rg) {
			out = append(out, groupResource{v.id, v.name, "Microsoft.Compute/virtualMachines", normaliseLocation(v.location)})
		}
	}
	for _, w := range s.watcherStates(sub) {
		if in(w.id, w.rg) {
			out = append(out, groupResource{w.id, w.name, "Microsoft.Network/networkWatchers", normaliseLocation(w.location)})
		}
	}
	slices.SortFunc(out, func(a, b groupResource) int { return strings.Compare(strings.ToLower(a.ID), strings.ToLower(b.ID)) })
	return out
}

// listGroupResources answers GET .../resourceGroups/{rg}/resources.
func (s *Server) listGroupResources(w http.ResponseWriter, r *http.Request, q armRequest) {
	// requireGroup has answered for a group that does not exist.
	s.writeList(w, r, func() ([]any, bool) {
		var items []any
		for _, res := range s.groupResources(q.sub, q.rg) {
			items = append(items, res)
		}
		return items, true
	})
}

// deleteResourceGroup deletes a group and everything in it, as ARM does
// (there is no refusal for a group that is not empty): 202 Accepted with a
// Location to poll, 404 ResourceGroupNotFound for a group that does not
// exist. The deletion takes effect at once; polling the Location answers
// 200.
func (s *Server) deleteResourceGroup(w http.ResponseWriter, r *http.Request, q armRequest) {
	s.mu.Lock()
	if !s.groupExists(q.sub, q.rg) {
		s.mu.Unlock()
		writeARMError(w, http.StatusNotFound, "ResourceGroupNotFound", fmt.Sprintf("Resource group '%s' could not be found.", q.rg))
		return
	}
	in := func(id, group string) bool { return strings.EqualFold(group, q.rg) && inSubscription(id, q.sub) }
	s.settleAll()
	for k, e := range s.nsgs {
		if st := e.visible(); st != nil && in(st.id, st.rg) || e.state != nil && in(e.state.id, e.state.rg) {
			delete(s.nsgs, k)
		}
	}
	deleteNet(s.vnets, in)
	deleteNet(s.nics, in)
	for k, v := range s.vms {
		if in(v.id, v.rg) {
			delete(s.vms, k)
		}
	}
	for k, v := range s.watchers {
		if in(v.id, v.rg) {
			delete(s.watchers, k)
		}
	}
	for k := range s.adminRules {
		if strings.HasPrefix(k, vnetKey(q.sub, q.rg, "")) {
			delete(s.adminRules, k)
		}
	}
	name := s.groupName(q.sub, q.rg)
	delete(s.groups, scopeKey(q.sub, q.rg))
	s.mu.Unlock()

	job, _ := json.Marshal(map[string]string{"jobId": "ResourceGroupDeletionJob-" + strings.ToUpper(name) + "-" + uuid.NewString(), "jobLocation": "westeurope"})
	w.Header().Set("Location", s.baseURL(r)+"/subscriptions/"+q.sub+"/operationresults/"+
		base64.RawURLEncoding.EncodeToString(job)+"?api-version="+q.apiVersion)
	w.WriteHeader(http.StatusAccepted)
}

// deleteNet removes the network resources of a group. Callers hold s.mu.
func deleteNet[T any, P netResource[T]](m map[string]*resourceEntry[T], in func(id, rg string) bool) {
	for k, e := range m {
		states := []*T{e.state}
		for _, w := range e.writes {
			states = append(states, w.visible, w.next)
		}
		for _, st := range states {
			if st != nil && in(P(st).meta().id, P(st).meta().rg) {
				delete(m, k)
				break
			}
		}
	}
}

// serveDeletionResult answers the poll of a resource group's deletion:
// 200 once it is done, which is at once here.
func (s *Server) serveDeletionResult(w http.ResponseWriter, q armRequest) {
	raw, err := base64.RawURLEncoding.DecodeString(q.operation)
	var job struct {
		JobID string `json:"jobId"`
	}
	if err != nil || json.Unmarshal(raw, &job) != nil || !strings.HasPrefix(job.JobID, "ResourceGroupDeletionJob-") {
		writeARMError(w, http.StatusNotFound, "NotFound", fmt.Sprintf("The operation '%s' could not be found.", q.operation))
		return
	}
	w.WriteHeader(http.StatusOK)
}

// groupName returns the resource group's name in the case it was created
// with, so that ids are stable whatever case a later request uses.
func (s *Server) groupName(sub, rg string) string {
	if g := s.groups[scopeKey(sub, rg)]; g != nil {
		return g.name
	}
	return rg
}
