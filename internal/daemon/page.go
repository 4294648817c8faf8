package daemon

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/jitaccess/terraform-provider-jit/internal/audit"
)

// PageCSP is the status page's Content-Security-Policy: nothing may load
// (no script, image, font, frame or connection) but the page's own inline
// style, and its filter form may only submit to jitd itself.
const PageCSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// PageRefresh is how often the status page reloads itself.
const PageRefresh = 10 * time.Second

//go:embed status.html
var pageSource string

var pageTemplate = template.Must(template.New("status").Funcs(template.FuncMap{
	"timestamp": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") },
	"left":      formatLeft,
	"shortNSG":  shortNSGID,
	"join":      strings.Join,
	"deref":     func(b *bool) bool { return b != nil && *b },
}).Parse(pageSource))

// pageData is what the template renders.
type pageData struct {
	Status  Status
	Events  []audit.Event // newest first
	Version string
	Refresh int // seconds
	// Attention counts the grants jitd is closing and the findings.
	Findings int
}

// Status is the status from jitd's latest reads of the scope: no Azure
// call is made. It is incomplete until the first full resync has finished,
// and while an NSG's latest read failed. The events are the latest audit
// events jitd emitted, oldest first.
func (d *Daemon) Status(f StatusFilter) (Status, []audit.Event) {
	now := d.now()
	d.statusMu.Lock()
	ids := sortedKeys(d.reads)
	entries := make([]*statusEntry, len(ids))
	parts := make([]nsgStatus, len(ids))
	var stale []int
	for i, id := range ids {
		entries[i] = d.reads[id]
		if p := entries[i].part; p != nil && p.validAt(now) {
			parts[i] = *p
		} else {
			stale = append(stale, i)
		}
	}
	inScope, scopeErr, passes := d.inScope, d.scopeErr, d.passes
	events := slices.Clone(d.events)
	d.statusMu.Unlock()

	// Judge the NSGs read or expired since the last view, outside the
	// lock, and keep the result for the next view unless the NSG was read
	// again meanwhile.
	for _, i := range stale {
		parts[i] = statusPart(entries[i].read, now, d.restore)
	}
	d.statusMu.Lock()
	for _, i := range stale {
		if d.reads[ids[i]] == entries[i] {
			p := parts[i]
			entries[i].part = &p
		}
	}
	d.statusMu.Unlock()

	var errs []string
	if passes == 0 {
		errs = append(errs, "jitd has not finished its first full read of the scope yet")
	}
	if scopeErr != "" {
		errs = append(errs, "listing the NSGs in scope: "+scopeErr)
	}
	return assembleStatus(parts, StatusOptions{Now: now, Restore: d.restore, InScope: inScope, ScopeErrors: errs, Filter: f}), events
}

// statusEntry is an NSG's latest read and, once a page view has judged
// it, its part of the status (guarded by Daemon.statusMu). A new read is
// a new entry.
type statusEntry struct {
	read NSGRead
	part *nsgStatus
}

// RenderPage writes the status page. Every piece of text in it that comes
// from Azure or a request (rule names, descriptions, requesters, reasons)
// is escaped by html/template for where it appears: it is data, never
// markup.
func RenderPage(w io.Writer, st Status, events []audit.Event, version string) error {
	rev := slices.Clone(events)
	slices.Reverse(rev)
	return pageTemplate.Execute(w, pageData{Status: st, Events: rev, Version: version, Refresh: int(PageRefresh / time.Second),
		Findings: len(st.Findings)})
}

// servePage is GET /status (HTML) and GET /status.json.
func (d *Daemon) servePage(asJSON bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", PageCSP)
		if !d.statusRemote && !loopbackPeer(r.RemoteAddr) {
			writeText(w, http.StatusForbidden, "the status page answers loopback clients only: put it behind an authenticating reverse proxy on this host, or start jitd with --status-remote")
			return
		}
		q := r.URL.Query()
		st, events := d.Status(StatusFilter{Policy: strings.TrimSpace(q.Get("policy")), NSG: strings.TrimSpace(q.Get("nsg")),
			Requester: strings.TrimSpace(q.Get("requester"))})
		var buf bytes.Buffer
		if asJSON {
			h.Set("Content-Type", "application/json")
			enc := json.NewEncoder(&buf)
			enc.SetIndent("", "  ")
			if err := enc.Encode(struct {
				Status
				Events []audit.Event `json:"recent_events"`
			}{st, events}); err != nil {
				writeText(w, http.StatusInternalServerError, "encoding the status failed")
				return
			}
		} else {
			h.Set("Content-Type", "text/html; charset=utf-8")
			if err := RenderPage(&buf, st, events, d.version); err != nil {
				d.log.Error("rendering the status page failed", "error", err)
				writeText(w, http.StatusInternalServerError, "rendering the status page failed")
				return
			}
		}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(buf.Bytes())
	}
}

// loopbackPeer reports whether a request's peer address is a loopback
// address.
func loopbackPeer(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// formatLeft is a grant's time left for people: "14m32s", "expired 3s ago".
func formatLeft(secs int64) string {
	if secs <= 0 {
		return fmt.Sprintf("expired %s ago", time.Duration(-secs)*time.Second)
	}
	return (time.Duration(secs) * time.Second).String()
}

// shortNSGID is "<resource group>/<name>" of an NSG id, or the id.
func shortNSGID(id string) string {
	parts := strings.Split(strings.Trim(id, "/"), "/")
	rg, name := "", ""
	for i := 0; i+1 < len(parts); i++ {
		switch strings.ToLower(parts[i]) {
		case "resourcegroups":
			rg = parts[i+1]
		case "networksecuritygroups":
			name = parts[i+1]
		}
	}
	if rg == "" || name == "" {
		return id
	}
	return rg + "/" + name
}
