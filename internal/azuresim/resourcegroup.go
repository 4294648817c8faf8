package azuresim

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/google/uuid"
)

// resourceGroup is a group a client created or one that holds an NSG.
// Groups are implicit: creating an NSG in a group creates the group.
type resourceGroup struct {
	name     string
	location string
	tags     json.RawMessage
}

// ensureGroup records a resource group implicitly created by a resource
// put in it.
// Callers hold s.mu.
func (s *Server) ensureGroup(rg, location string) {
	if s.groups[strings.ToLower(rg)] == nil {
		s.groups[strings.ToLower(rg)] = &resourceGroup{name: rg, location: normaliseLocation(location)}
	}
}

// serveResourceGroup answers GET, HEAD, PUT and DELETE of a resource group.
func (s *Server) serveResourceGroup(w http.ResponseWriter, r *http.Request, q armRequest) {
	key := strings.ToLower(q.rg)
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
			g, status = &resourceGroup{name: q.rg}, http.StatusCreated
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

func (s *Server) listResourceGroups(w http.ResponseWriter) {
	s.mu.Lock()
	// Ids share their prefix, so sorting by name sorts by id.
	groups := slices.SortedFunc(maps.Values(s.groups), func(a, b *resourceGroup) int {
		return strings.Compare(a.name, b.name)
	})
	var out []any
	for _, g := range groups {
		out = append(out, s.groupJSON(g))
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"value": out})
}

func (s *Server) groupJSON(g *resourceGroup) map[string]any {
	doc := map[string]any{
		"id":         "/subscriptions/" + s.subscriptionID + "/resourceGroups/" + g.name,
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
func (s *Server) groupExists(rg string) bool {
	if s.groups[strings.ToLower(rg)] != nil {
		return true
	}
	if !strings.EqualFold(rg, autoWatcherGroup) {
		return false
	}
	return len(s.vnets) > 0 || len(s.watcherOptOut) > 0 || slices.ContainsFunc(s.watcherStates(), func(w *watcherState) bool { return strings.EqualFold(w.rg, rg) })
}

// requireGroup answers 404 ResourceGroupNotFound, as ARM does before it
// looks any further, when a read names a resource group that does not
// exist: a typo must not read as an empty group.
func (s *Server) requireGroup(w http.ResponseWriter, r *http.Request, q armRequest) bool {
	if q.rg == "" || q.kind == "resource-group" || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		return true
	}
	s.mu.Lock()
	ok := s.groupExists(q.rg)
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
func (s *Server) groupResources(rg string) []groupResource {
	var out []groupResource
	in := func(group string) bool { return strings.EqualFold(group, rg) }
	s.settleAll()
	for _, e := range s.nsgs {
		if st := e.visible(); st != nil && in(st.rg) {
			out = append(out, groupResource{st.id, st.name, "Microsoft.Network/networkSecurityGroups", normaliseLocation(st.location)})
		}
	}
	for _, v := range netStates(s, s.vnets, false) {
		if in(v.rg) {
			out = append(out, groupResource{v.id, v.name, "Microsoft.Network/virtualNetworks", normaliseLocation(v.location)})
		}
	}
	for _, n := range netStates(s, s.nics, false) {
		if in(n.rg) {
			out = append(out, groupResource{n.id, n.name, "Microsoft.Network/networkInterfaces", normaliseLocation(n.location)})
		}
	}
	for _, v := range s.vmStates() {
		if in(v.rg) {
			out = append(out, groupResource{v.id, v.name, "Microsoft.Compute/virtualMachines", normaliseLocation(v.location)})
		}
	}
	for _, w := range s.watcherStates() {
		if in(w.rg) {
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
		for _, res := range s.groupResources(q.rg) {
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
	if !s.groupExists(q.rg) {
		s.mu.Unlock()
		writeARMError(w, http.StatusNotFound, "ResourceGroupNotFound", fmt.Sprintf("Resource group '%s' could not be found.", q.rg))
		return
	}
	in := func(group string) bool { return strings.EqualFold(group, q.rg) }
	s.settleAll()
	for k, e := range s.nsgs {
		if st := e.visible(); st != nil && in(st.rg) || e.state != nil && in(e.state.rg) {
			delete(s.nsgs, k)
		}
	}
	deleteNet(s.vnets, in)
	deleteNet(s.nics, in)
	for k, v := range s.vms {
		if in(v.rg) {
			delete(s.vms, k)
		}
	}
	for k, v := range s.watchers {
		if in(v.rg) {
			delete(s.watchers, k)
		}
	}
	for k := range s.adminRules {
		if strings.HasPrefix(k, vnetKey(q.rg, "")) {
			delete(s.adminRules, k)
		}
	}
	name := s.groupName(q.rg)
	delete(s.groups, strings.ToLower(q.rg))
	s.mu.Unlock()

	job, _ := json.Marshal(map[string]string{"jobId": "ResourceGroupDeletionJob-" + strings.ToUpper(name) + "-" + uuid.NewString(), "jobLocation": "westeurope"})
	w.Header().Set("Location", s.baseURL(r)+"/subscriptions/"+s.subscriptionID+"/operationresults/"+
		base64.RawURLEncoding.EncodeToString(job)+"?api-version="+q.apiVersion)
	w.WriteHeader(http.StatusAccepted)
}

// deleteNet removes the network resources of a group. Callers hold s.mu.
func deleteNet[T any, P netResource[T]](m map[string]*netEntry[T], in func(string) bool) {
	for k, e := range m {
		for _, st := range []*T{e.state, e.visible, e.next} {
			if st != nil && in(P(st).meta().rg) {
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
