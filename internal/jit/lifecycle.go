package jit

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A grant's lifecycle is a small state machine, shared by the provider and
// jitd so that both judge a grant the same way:
//
//	requested ──open──▶ active ──time is up──────────────▶ expired
//	    │                 ├──rule deleted out of band─────▶ revoked
//	    │                 └──closed (destroyed, or failed  ▶ closed
//	    │                    its policy's checks)
//	    └──the same request has already ended ─────────────▶ (stays ended)
//
// Expired, revoked and closed are terminal. Nothing that happens around a
// grant — its policy gaining or losing an NSG, a rename, `-replace`, an
// import, state lost and the same request applied again — writes a rule
// for a grant that has ended: a new window is a new request, which review
// sees as a change to the configuration.

// GrantState is where a grant is in its lifecycle.
type GrantState string

// Grant states.
const (
	GrantRequested GrantState = "requested"
	GrantActive    GrantState = "active"
	GrantExpired   GrantState = "expired"
	GrantRevoked   GrantState = "revoked"
	GrantClosed    GrantState = "closed"
)

// Terminal reports whether the state is an end: expired, revoked or closed.
func (s GrantState) Terminal() bool {
	return s == GrantExpired || s == GrantRevoked || s == GrantClosed
}

// GrantRequest is a request as reviewed: everything the configuration says
// about it. Two identical requests are one grant.
type GrantRequest struct {
	Policy            string
	Spec              GrantSpec
	Justification     string
	ApprovalReference string
}

// ID is the request's grant id: derived from every field of the request, so
// that the same request applied again — after its state was lost, by
// `-replace`, or in a second configuration — is recognised as the same
// grant (adopted while open, refused once ended) and never doubled, while a
// request that differs in anything (another justification, another
// approval reference) is a new grant. 10 characters of [a-z0-9] from
// SHA-256 of a length-prefixed encoding of the fields.
func (r GrantRequest) ID() string {
	ports := make([]string, len(r.Spec.Ports))
	for i, p := range r.Spec.Ports {
		ports[i] = strconv.Itoa(int(p))
	}
	return digest36(grantIDLength, "jit-grant-request/v1", r.Policy, strings.Join(ports, ","), string(r.Spec.Protocol),
		r.Spec.SourceString(), strconv.FormatInt(int64(r.Spec.Duration/time.Second), 10), r.Spec.Requester,
		r.Justification, r.ApprovalReference)
}

// digest36 is the first n characters of SHA-256 over a length-prefixed
// encoding of fields, in base 36 ([0-9a-z]), left-padded with zeros.
func digest36(n int, fields ...string) string {
	h := sha256.New()
	for _, f := range fields {
		var l [8]byte
		binary.BigEndian.PutUint64(l[:], uint64(len(f)))
		h.Write(l[:])
		h.Write([]byte(f))
	}
	s := new(big.Int).SetBytes(h.Sum(nil)).Text(36)
	for len(s) < n {
		s = "0" + s
	}
	return s[:n]
}

const grantIDLength = 10

// GrantSighting is what one NSG of the grant's policy says about a grant.
type GrantSighting struct {
	NSGID string
	// Rule is the grant's rule on this NSG, nil when there is none.
	Rule *GrantRule
	// Open is true when a rule of the grant's name is there, even one that
	// no longer decodes: it is still letting someone in.
	Open bool
	// Altered says why the grant's rule here is not as the grant wrote it
	// (its seal does not match), "" otherwise. Such a rule is Open, and
	// Rule is nil.
	Altered string
	// Ended is the grant's record on this NSG, nil when there is none.
	Ended *EndedRecord
}

// SightGrant finds grant id of policy in one NSG's view.
func SightGrant(nsgID string, view NSGView, policy, id string) GrantSighting {
	s := GrantSighting{NSGID: nsgID}
	name := GrantRuleName(policy, id)
	for i, g := range view.Grants {
		if strings.EqualFold(g.Rule.Name, name) {
			s.Rule, s.Open = &view.Grants[i], true
		}
	}
	for _, f := range view.Malformed {
		if strings.EqualFold(f.Rule.Name, name) {
			s.Open = true
			if f.Grant != nil {
				s.Altered = f.Reason
			}
		}
	}
	ended := EndedRuleName(policy, id)
	for i, e := range view.Ended {
		if strings.EqualFold(e.Rule.Name, ended) {
			s.Ended = &view.Ended[i]
		}
	}
	return s
}

// Observe is the grant's state after looking at its NSGs at time now. A
// terminal state never changes. An active grant (or one being read back
// after an import) expires when its window ends, is closed when a record
// says it ended, and is revoked when its rule is missing from an NSG of its
// policy before then.
func (s GrantState) Observe(expiresAt time.Time, sightings []GrantSighting, now time.Time) GrantState {
	if s.Terminal() {
		return s
	}
	if !expiresAt.IsZero() && !now.Before(expiresAt) {
		return GrantExpired
	}
	for _, x := range sightings {
		if x.Ended != nil {
			return GrantClosed
		}
	}
	for _, x := range sightings {
		if !x.Open {
			return GrantRevoked
		}
	}
	return GrantActive
}

// OpenAction is what a create does with a request.
type OpenAction int

// Open actions.
const (
	// OpenNew writes the grant's rules for a new window.
	OpenNew OpenAction = iota
	// OpenAdopt takes over the rules of the same request, still open: the
	// window is theirs, nothing is written.
	OpenAdopt
	// OpenRefuse writes nothing: the same request has already ended.
	OpenRefuse
)

// OpenDecision is DecideOpen's answer.
type OpenDecision struct {
	Action OpenAction
	// ExpiresAt is the end of the window: a new one from now, or the
	// adopted rule's.
	ExpiresAt time.Time
	// Reason says why a request is adopted or refused, for people.
	Reason string
	// CloseRemains is set with OpenRefuse when the request's rule is open
	// on some of the policy's NSGs and missing on others, with no record:
	// an open that was interrupted, or a revocation nobody recorded. The
	// two cannot be told apart, so the grant counts as revoked and what
	// remains open is closed (fail closed), never completed.
	CloseRemains bool
}

// DecideOpen decides what creating a grant does, given what the policy's
// NSGs say about the request's id. A record of the request having ended, or
// a rule of it whose window is over, refuses; a rule still open is adopted
// with its own window (never extended); otherwise a new window starts now.
func DecideOpen(id string, duration time.Duration, sightings []GrantSighting, now time.Time) OpenDecision {
	for _, x := range sightings {
		if x.Ended != nil {
			return OpenDecision{Action: OpenRefuse, ExpiresAt: x.Ended.ExpiresAt,
				Reason: fmt.Sprintf("this exact request (grant %s) was already granted and ended (window until %s; record %s on %s)",
					id, x.Ended.ExpiresAt.UTC().Format(time.RFC3339), x.Ended.Rule.Name, x.NSGID)}
		}
	}
	var adopt *GrantRule
	for _, x := range sightings {
		if x.Rule != nil && (adopt == nil || x.Rule.ExpiresAt.Before(adopt.ExpiresAt)) {
			adopt = x.Rule
		}
	}
	if adopt != nil {
		missing := slices.IndexFunc(sightings, func(x GrantSighting) bool { return !x.Open })
		if missing >= 0 {
			return OpenDecision{Action: OpenRefuse, ExpiresAt: adopt.ExpiresAt, CloseRemains: true,
				Reason: fmt.Sprintf("this exact request (grant %s) is open on some NSGs of its policy but not on %s: an open "+
					"that was interrupted, or a revocation; it counts as revoked and what remains open is closed",
					id, sightings[missing].NSGID)}
		}
		if !now.Before(adopt.ExpiresAt) {
			return OpenDecision{Action: OpenRefuse, ExpiresAt: adopt.ExpiresAt,
				Reason: fmt.Sprintf("this exact request (grant %s) was already granted and its window ended at %s",
					id, adopt.ExpiresAt.UTC().Format(time.RFC3339))}
		}
		return OpenDecision{Action: OpenAdopt, ExpiresAt: adopt.ExpiresAt,
			Reason: fmt.Sprintf("this exact request (grant %s) is already open until %s: it is taken over, not opened again",
				id, adopt.ExpiresAt.UTC().Format(time.RFC3339))}
	}
	for _, x := range sightings {
		if x.Open {
			// A rule of this name that does not decode: never build on it.
			return OpenDecision{Action: OpenRefuse,
				Reason: fmt.Sprintf("a rule of grant %s is on %s but does not read back as a grant; jitd closes it", id, x.NSGID)}
		}
	}
	return OpenDecision{Action: OpenNew, ExpiresAt: now.Add(duration)}
}

// Tampered returns why a grant's rule on one of the NSGs no longer says what
// its request did (its source, ports or protocol were edited in place), or
// "" when every rule found matches want. Such a rule is not the grant that
// was reviewed: the grant counts as revoked, and the rule is closed.
func Tampered(sightings []GrantSighting, want SecurityRule) string {
	for _, s := range sightings {
		if s.Altered != "" {
			return fmt.Sprintf("on %s: %s", s.NSGID, s.Altered)
		}
		if s.Rule == nil {
			continue
		}
		got := s.Rule.Rule
		switch {
		case !slices.Equal(canonicalPrefixSet(got.SourcePrefixes), canonicalPrefixSet(want.SourcePrefixes)):
			return fmt.Sprintf("the rule on %s lets %s in, the request asked for %s", s.NSGID,
				strings.Join(got.SourcePrefixes, ","), strings.Join(want.SourcePrefixes, ","))
		case !slices.Equal(sortedCopy(got.DestinationPorts), sortedCopy(want.DestinationPorts)) ||
			!strings.EqualFold(string(got.Protocol), string(want.Protocol)):
			return fmt.Sprintf("the rule on %s opens %s/%s, the request asked for %s/%s", s.NSGID,
				strings.Join(got.DestinationPorts, ","), got.Protocol, strings.Join(want.DestinationPorts, ","), want.Protocol)
		}
	}
	return ""
}
