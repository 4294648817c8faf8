package azure

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"

	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// Azure serialises writes to one NSG: a rule PUT holds the NSG for the
// whole long-running operation, and every other write waits. One rule PUT
// per change therefore costs one write latency per change. ApplyRuleChanges
// instead gathers the changes that callers ask for while a write is under
// way and applies them together as one write of the whole NSG: read it
// (with its ETag), change its rule list, write it back with If-Match. A
// concurrent writer elsewhere makes the ETag stale; the write then fails
// with 412 and the batch is read and applied again, so no update is lost.
//
// The NSG is read and written as raw JSON, not through the SDK's model, so
// that every property this project does not know (tags, flow logs, new
// properties of newer api-versions) is written back exactly as it was read.

// nsgAPIVersion is the Microsoft.Network api-version of whole-NSG reads
// and writes, the one armnetwork/v9 uses.
const nsgAPIVersion = "2025-05-01"

// maxBatchAttempts bounds how often a batch is read and written again
// after its ETag went stale.
const maxBatchAttempts = 8

// The first change to an idle NSG waits a moment for others before it is
// written: Terraform starts the resources of one apply (ten at a time by
// default) within a fraction of a second of each other, and waiting lets
// them share the first write instead of queueing behind it. The wait is a
// quarter of the NSG's last write (Azure's take seconds), between
// minGather and maxGather, so it always costs far less than the write it
// saves.
const (
	minGather = 25 * time.Millisecond
	maxGather = 250 * time.Millisecond
)

// RuleChange is one change to an NSG's rules.
type RuleChange struct {
	// Put writes the rule, replacing one of the same name.
	Put *jit.SecurityRule
	// Choose, when Put is nil, is called with the NSG's rules as they will
	// be just before this change (other changes of the batch included) and
	// returns the rule to put: a grant chooses a free priority this way.
	// An error fails the call that made the change, and only it.
	Choose func(current []jit.SecurityRule) (jit.SecurityRule, error)
	// Delete removes the rule of this name; a missing rule is no error.
	Delete string
}

// ApplyRuleChanges applies the changes to the NSG in one write, together
// with the changes other goroutines ask for meanwhile, and returns the
// rules the Put and Choose changes wrote (in order). The changes of one
// call succeed or fail together.
func (c *Client) ApplyRuleChanges(ctx context.Context, nsgID string, changes []RuleChange) ([]jit.SecurityRule, error) {
	id, err := ParseNSGID(nsgID)
	if err != nil {
		return nil, err
	}
	call := &batchCall{ctx: ctx, changes: changes, done: make(chan struct{})}
	b := c.batcherFor(id)
	b.mu.Lock()
	b.pending = append(b.pending, call)
	lead := !b.running
	b.running = true
	b.mu.Unlock()
	if lead {
		// This goroutine writes batches until none is pending, its own
		// first; callers arriving meanwhile wait for it.
		c.drain(ctx, id, b)
	}
	select {
	case <-call.done:
		return call.written, call.err
	case <-ctx.Done():
		return nil, newError("change security rules of", nsgID, ctx.Err())
	}
}

type batcher struct {
	mu        sync.Mutex
	pending   []*batchCall
	running   bool
	lastWrite time.Duration // how long the NSG's last write took
}

// gather is how long the first change after an idle time waits for others.
func (b *batcher) gather() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return min(max(b.lastWrite/4, minGather), maxGather)
}

type batchCall struct {
	ctx     context.Context
	changes []RuleChange
	written []jit.SecurityRule
	err     error
	done    chan struct{}
}

func (call *batchCall) finish(written []jit.SecurityRule, err error) {
	call.written, call.err = written, err
	close(call.done)
}

func (c *Client) batcherFor(id NSGID) *batcher {
	key := strings.ToLower(id.String())
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.batchers == nil {
		c.batchers = map[string]*batcher{}
	}
	b := c.batchers[key]
	if b == nil {
		b = &batcher{}
		c.batchers[key] = b
	}
	return b
}

func (c *Client) drain(ctx context.Context, id NSGID, b *batcher) {
	// The batch carries other callers' changes: it must not be cut short
	// because the leading caller gives up.
	ctx = context.WithoutCancel(ctx)
	// Changes arriving while a write is under way gather by themselves; the
	// first write after an idle time waits a moment for its companions.
	if c.gatherBatches {
		time.Sleep(b.gather())
	}
	for {
		b.mu.Lock()
		batch := b.pending
		b.pending = nil
		if len(batch) == 0 {
			b.running = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		start := time.Now()
		c.writeBatch(ctx, id, batch)
		b.mu.Lock()
		b.lastWrite = time.Since(start)
		b.mu.Unlock()
	}
}

// writeBatch applies the calls' changes in one NSG write. When Azure
// refuses the write as invalid and the batch holds several calls, each call
// is tried alone, so that one bad change fails only its own caller.
func (c *Client) writeBatch(ctx context.Context, id NSGID, batch []*batchCall) {
	err := c.writeNSG(ctx, id, batch)
	if err == nil {
		return
	}
	if len(batch) > 1 && (errors.Is(err, ErrInvalid) || errors.Is(err, ErrConflict)) {
		for _, call := range batch {
			if err := c.writeNSG(ctx, id, []*batchCall{call}); err != nil && !isClosed(call.done) {
				call.finish(nil, err)
			}
		}
		return
	}
	for _, call := range batch {
		if !isClosed(call.done) {
			call.finish(nil, err)
		}
	}
}

// writeNSG reads the NSG, applies the calls' changes and writes it back
// with If-Match, again from the read when the ETag went stale. Calls whose
// own changes fail (a Choose error) are finished at once; the others are
// finished when the write succeeds. A returned error is for the calls not
// finished yet.
func (c *Client) writeNSG(ctx context.Context, id NSGID, batch []*batchCall) error {
	const op = "write network security group"
	pipeline, endpoint, err := c.rawClient()
	if err != nil {
		return err
	}
	nsgURL := strings.TrimSuffix(endpoint, "/") + id.String() + "?api-version=" + url.QueryEscape(nsgAPIVersion)
	var lastErr error
	for range maxBatchAttempts {
		doc, etag, err := c.getRawNSG(ctx, pipeline, nsgURL, id)
		if err != nil {
			return err
		}
		rules, err := doc.rules()
		if err != nil {
			return &Error{Kind: KindInvalid, Op: op, ResourceID: id.String(), Message: err.Error(), Err: err}
		}
		var pending []*batchCall
		written := map[*batchCall][]string{}
		for _, call := range batch {
			if call.err != nil || isClosed(call.done) {
				continue
			}
			next, names, err := applyChanges(rules, call.changes)
			if err != nil {
				call.finish(nil, err)
				continue
			}
			rules = next
			written[call] = names
			pending = append(pending, call)
		}
		if len(pending) == 0 {
			return nil
		}
		if err := doc.setRules(rules); err != nil {
			return &Error{Kind: KindInvalid, Op: op, ResourceID: id.String(), Message: err.Error(), Err: err}
		}
		result, err := c.putRawNSG(ctx, pipeline, nsgURL, id, doc, etag)
		if errors.Is(err, ErrPreconditionFailed) {
			lastErr = err
			continue // someone else wrote the NSG: read it again
		}
		if err != nil {
			return err
		}
		stored, _ := result.rules()
		for _, call := range pending {
			call.finish(pickRules(stored, rules, written[call]), nil)
		}
		return nil
	}
	return lastErr
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// applyChanges returns the rule list after the changes, and the names of the
// rules they put.
func applyChanges(rules []rawRule, changes []RuleChange) ([]rawRule, []string, error) {
	next := append([]rawRule(nil), rules...)
	var names []string
	for _, ch := range changes {
		switch {
		case ch.Put != nil || ch.Choose != nil:
			r := ch.Put
			if r == nil {
				current := make([]jit.SecurityRule, len(next))
				for i, raw := range next {
					current[i] = raw.rule
				}
				chosen, err := ch.Choose(current)
				if err != nil {
					return nil, nil, err
				}
				r = &chosen
			}
			if r.Name == "" || r.UsesApplicationSecurityGroups {
				return nil, nil, &Error{Kind: KindInvalid, Op: "put security rule", ResourceID: r.Name,
					Message: "a rule needs a name, and rules with application security groups cannot be written"}
			}
			raw, err := newRawRule(*r)
			if err != nil {
				return nil, nil, err
			}
			next = putRaw(next, raw)
			names = append(names, r.Name)
		case ch.Delete != "":
			next = deleteRaw(next, ch.Delete)
		}
	}
	return next, names, nil
}

func putRaw(rules []rawRule, r rawRule) []rawRule {
	for i := range rules {
		if strings.EqualFold(rules[i].rule.Name, r.rule.Name) {
			rules[i] = r
			return rules
		}
	}
	return append(rules, r)
}

func deleteRaw(rules []rawRule, name string) []rawRule {
	out := rules[:0:0]
	for _, r := range rules {
		if !strings.EqualFold(r.rule.Name, name) {
			out = append(out, r)
		}
	}
	return out
}

// pickRules returns the named rules as Azure stored them, or as written
// when the response did not list them.
func pickRules(stored, written []rawRule, names []string) []jit.SecurityRule {
	out := make([]jit.SecurityRule, 0, len(names))
	for _, name := range names {
		found := false
		for _, list := range [][]rawRule{stored, written} {
			for _, r := range list {
				if !found && strings.EqualFold(r.rule.Name, name) {
					out = append(out, r.rule)
					found = true
				}
			}
		}
	}
	return out
}

// rawNSG is an NSG document as ARM returned it.
type rawNSG map[string]json.RawMessage

// rawRule is one rule of the document: the JSON as read (or built), and
// what it means.
type rawRule struct {
	json json.RawMessage
	rule jit.SecurityRule
}

func newRawRule(r jit.SecurityRule) (rawRule, error) {
	b, err := json.Marshal(ruleToARM(r))
	if err != nil {
		return rawRule{}, fmt.Errorf("encode rule %s: %w", r.Name, err)
	}
	return rawRule{json: b, rule: r}, nil
}

func (d rawNSG) properties() (map[string]json.RawMessage, error) {
	props := map[string]json.RawMessage{}
	if raw, ok := d["properties"]; ok {
		if err := json.Unmarshal(raw, &props); err != nil {
			return nil, fmt.Errorf("decode the NSG's properties: %w", err)
		}
	}
	return props, nil
}

func (d rawNSG) rules() ([]rawRule, error) {
	props, err := d.properties()
	if err != nil {
		return nil, err
	}
	var list []json.RawMessage
	if raw, ok := props["securityRules"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, fmt.Errorf("decode the NSG's security rules: %w", err)
		}
	}
	out := make([]rawRule, 0, len(list))
	for _, raw := range list {
		var sr armnetwork.SecurityRule
		if err := json.Unmarshal(raw, &sr); err != nil {
			return nil, fmt.Errorf("decode a security rule: %w", err)
		}
		out = append(out, rawRule{json: raw, rule: ruleFromARM(&sr)})
	}
	return out, nil
}

func (d rawNSG) setRules(rules []rawRule) error {
	props, err := d.properties()
	if err != nil {
		return err
	}
	list := make([]json.RawMessage, len(rules))
	for i, r := range rules {
		list[i] = r.json
	}
	if props["securityRules"], err = json.Marshal(list); err != nil {
		return fmt.Errorf("encode the NSG's security rules: %w", err)
	}
	d["properties"], err = json.Marshal(props)
	return err
}

// rawClient returns the ARM pipeline (credential, retries, busy-NSG
// retries, user agent) and endpoint for raw requests, built once. Raw
// requests carry the full resource id, so one serves every subscription.
func (c *Client) rawClient() (runtime.Pipeline, string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.raw == nil {
		client, err := arm.NewClient("jit-nsg-batch", "v1.0.0", c.cred, c.armOptions)
		if err != nil {
			return runtime.Pipeline{}, "", &Error{Kind: KindInvalid, Op: "prepare", Message: err.Error(), Err: err}
		}
		c.raw = client
	}
	return c.raw.Pipeline(), c.raw.Endpoint(), nil
}

func (c *Client) getRawNSG(ctx context.Context, pipeline runtime.Pipeline, nsgURL string, id NSGID) (rawNSG, string, error) {
	const op = "read network security group"
	req, err := runtime.NewRequest(ctx, http.MethodGet, nsgURL)
	if err != nil {
		return nil, "", newError(op, id.String(), err)
	}
	req.Raw().Header.Set("Accept", "application/json")
	resp, err := pipeline.Do(req)
	if err != nil {
		return nil, "", newError(op, id.String(), err)
	}
	if !runtime.HasStatusCode(resp, http.StatusOK) {
		return nil, "", newError(op, id.String(), runtime.NewResponseError(resp))
	}
	var doc rawNSG
	if err := runtime.UnmarshalAsJSON(resp, &doc); err != nil {
		return nil, "", newError(op, id.String(), err)
	}
	var etag string
	if raw, ok := doc["etag"]; ok {
		_ = json.Unmarshal(raw, &etag)
	}
	if etag == "" {
		etag = resp.Header.Get("ETag")
	}
	return doc, etag, nil
}

func (c *Client) putRawNSG(ctx context.Context, pipeline runtime.Pipeline, nsgURL string, id NSGID, doc rawNSG, etag string) (rawNSG, error) {
	const op = "write network security group"
	req, err := runtime.NewRequest(ctx, http.MethodPut, nsgURL)
	if err != nil {
		return nil, newError(op, id.String(), err)
	}
	if etag != "" {
		req.Raw().Header.Set("If-Match", etag)
	}
	if err := runtime.MarshalAsJSON(req, doc); err != nil {
		return nil, newError(op, id.String(), err)
	}
	resp, err := pipeline.Do(req)
	if err != nil {
		return nil, newError(op, id.String(), err)
	}
	if !runtime.HasStatusCode(resp, http.StatusOK, http.StatusCreated) {
		return nil, newError(op, id.String(), runtime.NewResponseError(resp))
	}
	poller, err := runtime.NewPoller[rawNSG](resp, pipeline, nil)
	if err != nil {
		return nil, newError(op, id.String(), err)
	}
	result, err := poller.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: c.pollFrequency})
	if err != nil {
		return nil, newError(op, id.String(), err)
	}
	return result, nil
}
