package dataplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"

	"github.com/jitaccess/terraform-provider-jit/internal/azuresim/nsgrules"
)

// simEvent is the part of a local Azure write event the dataplane reads.
type simEvent struct {
	Seq    int64  `json:"seq"`
	NSGID  string `json:"nsgId"`
	Result string `json:"result"`
}

// Sync brings the kernel up to date with the local Azure as of now: it
// reads the event log (which also completes the operations that are due),
// re-reads every NSG on the path that has new or newly finished writes,
// installs the recompiled ruleset atomically and then, for each changed
// NSG whose flushConnection is true, deletes the conntrack entries of flows
// to the VM so that the kernel judges their next packet by the new rules.
// When Sync returns nil, every write that completed before the call is
// enforced.
func (d *Dataplane) Sync(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	events, err := d.readEvents(ctx)
	if err != nil {
		return err
	}
	next := make([]pathNSG, len(d.path))
	copy(next, d.path)
	seen := make([]string, len(d.path))
	changed := make([]bool, len(d.path))
	for i, n := range d.path {
		seen[i] = fingerprint(events, n.id)
		if d.synced && seen[i] == d.seen[i] {
			continue
		}
		got, err := d.readNSG(ctx, n.id)
		var respErr *azcore.ResponseError
		switch {
		case errors.As(err, &respErr) && respErr.StatusCode == http.StatusNotFound:
			got = pathNSG{id: n.id, unreadable: true}
		case err != nil:
			return err
		}
		next[i] = got
		// A rule's DELETE shows the NSG's new ETag while it runs, with the
		// rule still in force (Deleting); its completion then removes the
		// rule under the same ETag. So the rules, not only the ETag, say
		// whether the NSG changed.
		changed[i] = !d.synced || got.etag != n.etag || got.unreadable != n.unreadable || got.flush != n.flush ||
			!slices.Equal(compileNSG(d.vm, got.rules, d.cfg.Env), compileNSG(d.vm, n.rules, d.cfg.Env))
	}
	text := compile(d.vm, next, d.cfg.Env)
	if text != d.applied {
		if err := runIP(ctx, []byte(text), "netns", "exec", d.vmNS, "nft", "-f", "-"); err != nil {
			return fmt.Errorf("install ruleset: %w", err)
		}
		d.applied = text
	}
	flush := false
	for i := range next {
		if changed[i] {
			d.cfg.Logf("dataplane: %s changed (etag %s, flushConnection %v)", next[i].id[strings.LastIndex(next[i].id, "/")+1:], next[i].etag, next[i].flush)
			flush = flush || (d.synced && (next[i].flush || next[i].unreadable))
		}
	}
	if flush {
		if err := d.flushConntrack(ctx); err != nil {
			return err
		}
		d.flushes++
	}
	d.path, d.seen, d.synced = next, seen, true
	var missing []error
	for _, n := range next {
		if n.unreadable {
			missing = append(missing, fmt.Errorf("NSG %s not found: refusing every new flow", n.id))
		}
	}
	return errors.Join(missing...)
}

// fingerprint is what the event log says about one NSG: every write to it
// and how far it got. A change means the NSG must be read again.
func fingerprint(events []simEvent, nsgID string) string {
	var b strings.Builder
	for _, e := range events {
		if strings.EqualFold(e.NSGID, nsgID) {
			b.WriteString(strconv.FormatInt(e.Seq, 10) + ":" + e.Result + ";")
		}
	}
	return b.String()
}

func (d *Dataplane) readEvents(ctx context.Context) ([]simEvent, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(d.cfg.SimURL, "/")+"/_sim/events", nil)
	if err != nil {
		return nil, err
	}
	resp, err := d.cfg.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read the local Azure's event log: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("read the local Azure's event log: status %d", resp.StatusCode)
	}
	var body struct {
		Events []simEvent `json:"events"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("read the local Azure's event log: %w", err)
	}
	return body.Events, nil
}

// readNSG reads one NSG with the armnetwork client.
func (d *Dataplane) readNSG(ctx context.Context, id string) (pathNSG, error) {
	rid, err := arm.ParseResourceID(id)
	if err != nil || !strings.EqualFold(rid.ResourceType.String(), "Microsoft.Network/networkSecurityGroups") {
		return pathNSG{}, fmt.Errorf("%q is not a network security group id", id)
	}
	resp, err := d.cfg.Groups.Get(ctx, rid.ResourceGroupName, rid.Name, nil)
	if err != nil {
		return pathNSG{}, fmt.Errorf("read NSG %s: %w", id, err)
	}
	return fromARM(id, resp.SecurityGroup), nil
}

// fromARM converts an NSG as armnetwork returns it. Azure's default rules
// are not read: the compiler adds nsgrules.DefaultRules, as the evaluator
// does.
func fromARM(id string, g armnetwork.SecurityGroup) pathNSG {
	n := pathNSG{id: id}
	if g.Etag != nil {
		n.etag = *g.Etag
	}
	if g.Properties == nil {
		return n
	}
	if g.Properties.FlushConnection != nil {
		n.flush = *g.Properties.FlushConnection
	}
	for _, sr := range g.Properties.SecurityRules {
		if sr == nil || sr.Properties == nil {
			continue
		}
		p := sr.Properties
		r := nsgrules.Rule{
			Name:                str(sr.Name),
			SourcePrefixes:      oneOrMany(p.SourceAddressPrefix, p.SourceAddressPrefixes),
			DestinationPrefixes: oneOrMany(p.DestinationAddressPrefix, p.DestinationAddressPrefixes),
			SourcePorts:         oneOrMany(p.SourcePortRange, p.SourcePortRanges),
			DestinationPorts:    oneOrMany(p.DestinationPortRange, p.DestinationPortRanges),
			SourceASGs:          len(p.SourceApplicationSecurityGroups),
			DestinationASGs:     len(p.DestinationApplicationSecurityGroups),
		}
		if p.Priority != nil {
			r.Priority = *p.Priority
		}
		if p.Direction != nil {
			r.Direction = string(*p.Direction)
		}
		if p.Access != nil {
			r.Access = string(*p.Access)
		}
		if p.Protocol != nil {
			r.Protocol = string(*p.Protocol)
		}
		n.rules = append(n.rules, r)
	}
	return n
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// oneOrMany returns whichever of a rule's singular and plural fields holds
// its values, the singular one first, as the local Azure reads them.
func oneOrMany(one *string, many []*string) []string {
	if one != nil && *one != "" {
		return []string{*one}
	}
	var out []string
	for _, s := range many {
		if s != nil {
			out = append(out, *s)
		}
	}
	return out
}

// flushConntrack deletes the conntrack entries of TCP flows to the VM in
// its namespace: those whose original direction runs to the VM, and those
// the NSGs admitted whose original direction runs from it (a flow that an
// earlier flush made conntrack forget, picked up again from the VM's reply
// and then admitted by the client's next packet). Flows the VM opened keep
// their entries. conntrack exits 1 when there was nothing to delete.
func (d *Dataplane) flushConntrack(ctx context.Context) error {
	for _, filter := range [][]string{
		{"-d", d.vm.String()},
		{"-s", d.vm.String(), "-m", admittedMark},
	} {
		args := append([]string{"netns", "exec", d.vmNS, "conntrack", "-D", "-p", "tcp"}, filter...)
		out, err := outputCombined(ctx, "ip", args...)
		if err != nil && !strings.Contains(out, "0 flow entries have been deleted") {
			return fmt.Errorf("flush connections to %s: %w: %s", d.vm, err, strings.TrimSpace(out))
		}
	}
	return nil
}

// follow applies changes on its own every interval until ctx ends, logging
// an error once each time it differs from the last one.
func (d *Dataplane) follow(ctx context.Context, interval time.Duration) {
	defer close(d.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	last := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := d.Sync(ctx)
		msg := ""
		if err != nil && ctx.Err() == nil {
			msg = err.Error()
		}
		if msg != last && msg != "" {
			d.cfg.Logf("dataplane: follow: %s", msg)
		}
		last = msg
	}
}
