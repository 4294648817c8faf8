package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"

	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

const requestAbout = `
Prints a jit_access_grant block, ready to commit as its own file in a pull
request (--out DIR writes requests/<date>-<requester>-<policy>.tf and prints
its path). Values are checked locally: ports, duration (at least 1m, at most
24h), source (an IP address or CIDR), the policy id's shape. With --check the
policy is read from its NSGs (ARM_* credentials, as for the provider) and a
request outside it is refused with the messages terraform plan would print.
`

// EnvMyIPURL may name the what-is-my-IP endpoint of --source auto instead
// of --my-ip-url.
const EnvMyIPURL = "JITD_MY_IP_URL"

// requestOptions are `jitd request`'s parsed flags.
type requestOptions struct {
	policyID, protocol, source, duration, why string
	myIPURL                                   string
	requester, approval, name, outDir         string
	ports                                     []int64
	check                                     bool
	azure                                     azureFlags
}

// requestFlags defines `jitd request`'s flags on a new flag set.
func requestFlags(o *requestOptions) *flag.FlagSet {
	fs := newFlagSet("request")
	fs.StringVar(&o.policyID, "policy", "", "the jit_policy's id: <name>@<nsg id>[,<nsg id>...] (required)")
	fs.Func("port", "a port to open (repeatable; required)", func(v string) error {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not a port number", v)
		}
		o.ports = append(o.ports, n)
		return nil
	})
	fs.StringVar(&o.protocol, "protocol", "Tcp", "Tcp, Udp or *")
	fs.StringVar(&o.source, "source", "", "the one address (or CIDR) to let in, or auto: your public address, as --my-ip-url sees it (required)")
	fs.StringVar(&o.myIPURL, "my-ip-url", "", "the what-is-my-IP endpoint --source auto asks (plain-text answer); default $"+EnvMyIPURL+", else "+DefaultMyIPURL)
	fs.StringVar(&o.duration, "for", "", "how long, from apply: 30m, 2h, ... (required)")
	fs.StringVar(&o.why, "why", "", "the justification, e.g. a ticket and what for (required)")
	fs.StringVar(&o.requester, "requester", "", "who asks (default: git config user.email, else $USER@hostname)")
	fs.StringVar(&o.approval, "approval", "", "where the request is approved, e.g. the pull request URL")
	fs.StringVar(&o.name, "name", "", "the resource's name (default <requester>_<policy>_<date>)")
	fs.BoolVar(&o.check, "check", false, "read the policy from its NSGs and refuse a request outside it (needs ARM_* credentials)")
	fs.StringVar(&o.outDir, "out", "", "write the block to a new file in this directory and print its path")
	o.azure.register(fs)
	return fs
}

func parseRequestFlags(args []string) (requestOptions, error) {
	var o requestOptions
	return o, parseArgs(requestFlags(&o), args, 0)
}

// requestEnv is what `jitd request` takes from its surroundings, so that
// tests can fix it.
type requestEnv struct {
	getenv   func(string) string
	gitEmail func() string
	hostname func() (string, error)
	now      func() time.Time
	// http asks the what-is-my-IP endpoint of --source auto.
	http *http.Client
}

// gitEmail is `git config user.email`, or "" when git or the setting is
// missing.
func gitEmail() string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "git", "config", "user.email").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// runRequest is `jitd request`.
func runRequest(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	env := requestEnv{getenv: getenv, gitEmail: gitEmail, hostname: os.Hostname, now: time.Now, http: http.DefaultClient}
	return env.run(ctx, args, stdout, stderr, func(ctx context.Context, o requestOptions) (ruleLister, error) {
		c, _, err := o.azure.client(ctx, getenv)
		return c, err
	})
}

// ruleLister is what --check needs of *azure.Client.
type ruleLister interface {
	ListRules(ctx context.Context, nsgID string) ([]jit.SecurityRule, error)
}

// grantRequest is a request checked locally, ready to render.
type grantRequest struct {
	resourceName string
	policyName   string
	nsgIDs       []string
	requestOptions
}

func (env requestEnv) run(ctx context.Context, args []string, stdout, stderr io.Writer,
	connect func(context.Context, requestOptions) (ruleLister, error)) error {
	o, err := parseRequestFlags(args)
	if err != nil {
		return err
	}
	now := env.now().UTC()
	if o.requester == "" {
		o.requester = env.defaultRequester()
	}
	var auto netip.Addr
	if strings.TrimSpace(o.source) == sourceAuto {
		url := cmp.Or(strings.TrimSpace(o.myIPURL), strings.TrimSpace(env.getenv(EnvMyIPURL)), DefaultMyIPURL)
		if auto, err = publicAddress(ctx, cmp.Or(env.http, http.DefaultClient), url); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "jitd request: using your public address %s from %s\n", auto, url)
		o.source = auto.String()
	}
	req, err := checkRequest(o, now)
	if err != nil {
		// Bad values on the command line: a usage error (exit code 2).
		return &usageError{err: err}
	}
	if o.check {
		lister, err := connect(ctx, o)
		if err != nil {
			return err
		}
		policy, err := checkAgainstPolicy(ctx, lister, req)
		if auto.IsValid() && policy.Name != "" {
			// Said plainly rather than as a source outside the policy.
			if err := checkFamily(policy, auto); err != nil {
				return err
			}
		}
		if err != nil {
			return err
		}
	}
	block := renderGrant(req, now)
	if o.outDir == "" {
		_, err := io.WriteString(stdout, block)
		return err
	}
	path, err := writeRequestFile(o.outDir, requestFileName(now, req.requester, req.policyName), block)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, path)
	return err
}

// defaultRequester is git's user.email, else $USER@hostname.
func (env requestEnv) defaultRequester() string {
	if e := env.gitEmail(); e != "" {
		return e
	}
	user := env.getenv("USER")
	if user == "" {
		return ""
	}
	if h, err := env.hostname(); err == nil && h != "" {
		return user + "@" + h
	}
	return user
}

// Attribute paths, as the provider names them, so messages read the same
// as terraform plan's.
const (
	pathPolicyID      = "policy_id"
	pathSource        = "source_address_prefix"
	pathDuration      = "duration"
	pathJustification = "justification"
	pathRequester     = "requester"
)

var resourceNamePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

// checkRequest validates what needs no Azure and reports every problem at
// once, as the provider does.
func checkRequest(o requestOptions, now time.Time) (grantRequest, error) {
	var errs []error
	add := func(path, format string, args ...any) {
		errs = append(errs, &jit.FieldError{Path: path, Message: fmt.Sprintf(format, args...)})
	}
	req := grantRequest{requestOptions: o}

	name, nsgIDs, err := parsePolicyID(o.policyID)
	if err != nil {
		add(pathPolicyID, "%s", err)
	}
	req.policyName, req.nsgIDs = name, nsgIDs

	if len(o.ports) == 0 {
		add("ports", "at least one --port is required")
	}
	seen := map[int64]bool{}
	for i, n := range o.ports {
		switch {
		case n < 1 || n > 65535:
			add(fmt.Sprintf("ports[%d]", i), "port %d is outside the range 1–65535", n)
		case seen[n]:
			add(fmt.Sprintf("ports[%d]", i), "port %d is listed twice", n)
		}
		seen[n] = true
	}
	switch o.protocol {
	case string(jit.ProtocolTCP), string(jit.ProtocolUDP), string(jit.ProtocolAny):
	default:
		add("protocol", "protocol %q is not one of Tcp, Udp, *", o.protocol)
	}

	switch src := strings.TrimSpace(o.source); {
	case src == "":
		add(pathSource, "--source is required: the one address (or CIDR) to let in")
	case src == jit.Any || strings.EqualFold(src, "internet") || strings.EqualFold(src, "any"):
		add(pathSource, "source %q is not an address: give an IP address or CIDR", src)
	default:
		if _, err := jit.ParseAddressPrefix(src); err != nil {
			add(pathSource, "source %s", err)
		}
	}

	d, err := time.ParseDuration(o.duration)
	switch {
	case o.duration == "":
		add(pathDuration, "--for is required: how long access lasts, e.g. 30m or 2h")
	case err != nil:
		add(pathDuration, "duration %q is not a duration such as 30m or 2h", o.duration)
	case d < jit.MinGrantDuration:
		add(pathDuration, "duration %s is shorter than the minimum of %s", o.duration, jit.FormatDuration(jit.MinGrantDuration))
	case d%time.Second != 0:
		add(pathDuration, "duration %s is not a whole number of seconds", o.duration)
	case d > jit.MaxMaxDuration:
		add(pathDuration, "duration %s exceeds %s, the longest any policy allows", o.duration, jit.FormatDuration(jit.MaxMaxDuration))
	}

	if strings.TrimSpace(o.why) == "" {
		add(pathJustification, "--why is required: why access is needed (a ticket, what for)")
	}
	if strings.TrimSpace(o.requester) == "" {
		add(pathRequester, "--requester is required: who asks (no git user.email or $USER to default to)")
	}

	req.resourceName = o.name
	if req.resourceName == "" && len(errs) == 0 {
		req.resourceName = defaultResourceName(o.requester, name, now)
	}
	if !resourceNamePattern.MatchString(req.resourceName) && len(errs) == 0 {
		add("name", "%q is not a Terraform resource name: use letters, digits, underscores and hyphens, starting with a letter or underscore", req.resourceName)
	}
	if len(errs) > 0 {
		return req, &requestError{summary: "Invalid Access Request", err: errors.Join(errs...)}
	}
	return req, nil
}

// requestError prints a refusal the way terraform plan shows the
// provider's: a summary, then one "attribute: message" line per problem.
type requestError struct {
	summary string
	err     error
}

func (e *requestError) Error() string {
	var b strings.Builder
	b.WriteString(e.summary)
	for _, fe := range jit.FieldErrors(e.err) {
		b.WriteString("\n  " + fe.Error())
	}
	if len(jit.FieldErrors(e.err)) == 0 {
		b.WriteString("\n  " + e.err.Error())
	}
	return b.String()
}

func (e *requestError) Unwrap() error { return e.err }

// parsePolicyID reads "<name>@<nsg id>[,<nsg id>...]", the id of a
// jit_policy (jit.ParsePolicyID), and says which flag wants it when empty.
func parsePolicyID(id string) (string, []string, error) {
	if id == "" {
		return "", nil, errors.New("--policy is required: the jit_policy's id, <name>@<nsg id>[,<nsg id>...] (terraform output, or the policy's id attribute)")
	}
	return jit.ParsePolicyID(id)
}

// checkAgainstPolicy reads the policy from every NSG of its id and checks
// the request with Policy.CheckGrant, as terraform plan does: the policy
// must be on every NSG, intact and identical (fail closed).
func checkAgainstPolicy(ctx context.Context, lister ruleLister, req grantRequest) (jit.Policy, error) {
	var policy *jit.Policy
	for _, nsgID := range req.nsgIDs {
		rules, err := lister.ListRules(ctx, nsgID)
		if err != nil {
			return jit.Policy{}, fmt.Errorf("reading policy %q from %s: %w", req.policyName, nsgID, err)
		}
		decoded, ok := jit.ReadNSG(rules).Policies[req.policyName]
		switch {
		case !ok:
			return jit.Policy{}, &requestError{summary: "JIT Policy Not Found", err: &jit.FieldError{Path: pathPolicyID,
				Message: fmt.Sprintf("policy %q is not on %s: no grant can be opened there; the policy must be applied first", req.policyName, nsgID)}}
		case decoded.Problem != "":
			return jit.Policy{}, &requestError{summary: "JIT Policy Is Malformed", err: &jit.FieldError{Path: pathPolicyID,
				Message: fmt.Sprintf("policy %q on %s does not read back consistently (%s); grants are refused until the policy is applied again", req.policyName, nsgID, decoded.Problem)}}
		case policy != nil && !policy.Equal(decoded.Policy):
			return jit.Policy{}, &requestError{summary: "JIT Policy Differs Between NSGs", err: &jit.FieldError{Path: pathPolicyID,
				Message: fmt.Sprintf("policy %q on %s differs from the same policy on %s; the policy must be applied again", req.policyName, nsgID, req.nsgIDs[0])}}
		}
		if policy == nil {
			p := decoded.Policy
			policy = &p
		}
	}
	_, err := policy.CheckGrant(jit.GrantInput{Ports: req.ports, Protocol: req.protocol, Source: strings.TrimSpace(req.source),
		Duration: req.duration, Requester: req.requester})
	if err != nil {
		return *policy, &requestError{summary: "Access Request Outside the Policy", err: err}
	}
	return *policy, nil
}

// renderGrant writes the jit_access_grant block as terraform fmt would,
// through hclwrite: the values are untrusted text (a justification may hold
// quotes, "${...}" or "%{...}" template sequences, control characters), and
// a maintained HCL writer escapes them as Terraform reads them back.
func renderGrant(req grantRequest, now time.Time) string {
	f := hclwrite.NewEmptyFile()
	root := f.Body()
	root.AppendUnstructuredTokens(hclwrite.Tokens{
		{Type: hclsyntax.TokenComment, Bytes: []byte(fmt.Sprintf("# Written by `jitd request` on %s. Access lasts %s from the apply;\n",
			now.Format(time.DateOnly), hclComment(req.duration)))},
		{Type: hclsyntax.TokenComment, Bytes: []byte("# once it has expired, remove this file (plans warn until it is removed).\n")},
	})
	body := root.AppendNewBlock("resource", []string{"jit_access_grant", req.resourceName}).Body()
	ports := make([]cty.Value, len(req.ports))
	for i, p := range req.ports {
		ports[i] = cty.NumberIntVal(p)
	}
	body.SetAttributeValue("policy_id", cty.StringVal(req.policyID))
	body.SetAttributeValue("ports", cty.TupleVal(ports))
	if req.protocol != string(jit.ProtocolTCP) {
		body.SetAttributeValue("protocol", cty.StringVal(req.protocol))
	}
	body.SetAttributeValue("source_address_prefix", cty.StringVal(strings.TrimSpace(req.source)))
	body.SetAttributeValue("duration", cty.StringVal(req.duration))
	body.SetAttributeValue("requester", cty.StringVal(req.requester))
	body.SetAttributeValue("justification", cty.StringVal(req.why))
	if req.approval != "" {
		body.SetAttributeValue("approval_reference", cty.StringVal(req.approval))
	}
	return string(hclwrite.Format(f.Bytes()))
}

// hclComment keeps a value on its comment line.
func hclComment(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

// slug keeps lower-case letters and digits and turns every other run into
// sep.
func slug(s string, sep byte) string {
	var b strings.Builder
	pending := false
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			if pending && b.Len() > 0 {
				b.WriteByte(sep)
			}
			pending = false
			b.WriteRune(r)
			continue
		}
		pending = true
	}
	return b.String()
}

// defaultResourceName is <requester's local part>_<policy>_<yyyymmdd>, a
// valid resource name unlikely to clash with another request.
func defaultResourceName(requester, policy string, now time.Time) string {
	local, _, _ := strings.Cut(requester, "@")
	name := strings.Trim(slug(local, '_')+"_"+slug(policy, '_')+"_"+now.Format("20060102"), "_")
	if name == "" || !unicode.IsLetter(rune(name[0])) {
		name = "request_" + name
	}
	return name
}

// requestFileName is <yyyy-mm-dd>-<requester>-<policy>.tf.
func requestFileName(now time.Time, requester, policy string) string {
	return now.Format(time.DateOnly) + "-" + slug(requester, '-') + "-" + slug(policy, '-') + ".tf"
}

// writeRequestFile creates a new file in dir, never overwriting one: a
// second request the same day gets a -2, -3, ... suffix.
func writeRequestFile(dir, name, content string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("--out: %w", err)
	}
	base := strings.TrimSuffix(name, ".tf")
	for i := 1; i <= 100; i++ {
		path := filepath.Join(dir, name)
		if i > 1 {
			path = filepath.Join(dir, fmt.Sprintf("%s-%d.tf", base, i))
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("--out: %w", err)
		}
		if _, err := f.WriteString(content); err != nil {
			_ = f.Close()
			return "", fmt.Errorf("writing %s: %w", path, err)
		}
		if err := f.Close(); err != nil {
			return "", fmt.Errorf("writing %s: %w", path, err)
		}
		return path, nil
	}
	return "", fmt.Errorf("--out: %s and 99 numbered variants already exist in %s", name, dir)
}
