package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"time"
	"unicode"

	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// DefaultMyIPURL answers the caller's public address as plain text.
const DefaultMyIPURL = "https://api.ipify.org"

// sourceAuto is the --source value that asks the what-is-my-IP endpoint.
const sourceAuto = "auto"

// cgnat is the shared address space of carrier-grade NAT (RFC 6598): an
// address there is the carrier's, not the caller's.
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// publicAddress asks url for the caller's public address and refuses any
// answer that is not exactly one public unicast address: a private,
// loopback, link-local, CGNAT or otherwise non-public address would let in
// someone else (or no one), and an ambiguous answer cannot be trusted.
func publicAddress(ctx context.Context, client *http.Client, url string) (netip.Addr, error) {
	fail := func(format string, args ...any) (netip.Addr, error) {
		return netip.Addr{}, fmt.Errorf("--source auto: "+format+"; give the address with --source <address> instead", args...)
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fail("%q is not a usable --my-ip-url: %v", url, err)
	}
	req.Header.Set("Accept", "text/plain")
	req.Header.Set("User-Agent", "jitd/"+version)
	resp, err := client.Do(req)
	if err != nil {
		return fail("asking %s for your public address: %v", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if err != nil {
		return fail("reading %s's answer: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fail("%s answered %s", url, resp.Status)
	}
	text := strings.TrimSpace(string(body))
	if len(body) == 1024 || strings.IndexFunc(text, func(r rune) bool { return unicode.IsSpace(r) || r == ',' || r == ';' }) >= 0 {
		return fail("%s answered more than one address (%s): which one is yours is ambiguous", url, quoteAnswer(text))
	}
	addr, err := netip.ParseAddr(text)
	if err != nil || addr.Zone() != "" {
		return fail("%s answered %s, not an IP address", url, quoteAnswer(text))
	}
	addr = addr.Unmap()
	switch {
	case addr.IsLoopback():
		return fail("%s answered %s, a loopback address: the endpoint sees this machine, not your public address", url, addr)
	case addr.IsPrivate():
		return fail("%s answered %s, a private address: the endpoint is inside your network", url, addr)
	case addr.IsLinkLocalUnicast():
		return fail("%s answered %s, a link-local address", url, addr)
	case addr.Is4() && cgnat.Contains(addr):
		return fail("%s answered %s, a carrier-grade NAT address (100.64.0.0/10) that others share", url, addr)
	case !addr.IsGlobalUnicast():
		return fail("%s answered %s, which is not a public unicast address", url, addr)
	}
	return addr, nil
}

// quoteAnswer shows an endpoint's answer safely and briefly.
func quoteAnswer(s string) string {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return fmt.Sprintf("%q", s)
}

// checkFamily refuses an address of a family the policy does not allow
// (an IPv6 answer for an IPv4-only policy): the grant could never match.
func checkFamily(p jit.Policy, addr netip.Addr) error {
	for _, s := range p.AllowedSources {
		if s == jit.Any {
			return nil
		}
		if pfx, err := netip.ParsePrefix(s); err == nil && pfx.Addr().Is4() == addr.Is4() {
			return nil
		}
		if a, err := netip.ParseAddr(s); err == nil && a.Is4() == addr.Is4() {
			return nil
		}
	}
	family := "IPv6"
	if addr.Is4() {
		family = "IPv4"
	}
	return errors.New("--source auto found " + addr.String() + ", an " + family + " address, and the policy allows no " + family +
		" source; give the address with --source <address> instead")
}
