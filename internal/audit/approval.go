package audit

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// The environment variables a deployment pipeline sets, after a change was
// reviewed and merged, so that the provider records who approved it and
// what was applied in every event of that run. They are read from the
// environment of the Terraform run only, never from configuration or a
// request file: those are written by the requester, the pipeline's
// environment by the forge after the review.
const (
	// EnvApprovedBy lists the logins that approved the change, separated
	// by commas (e.g. the approving reviewers of the merged pull request).
	EnvApprovedBy = "JIT_APPROVED_BY"
	// EnvChangeRef names the change: "owner/repo#123", a GitLab "!45".
	EnvChangeRef = "JIT_CHANGE_REF"
	// EnvCommitSHA is the commit applied (40 or 64 hexadecimal digits).
	EnvCommitSHA = "JIT_COMMIT_SHA"
	// EnvChangeURL is the change's web address (http or https).
	EnvChangeURL = "JIT_CHANGE_URL"
)

// Limits on the approval values. They are generous for what forges issue
// (GitHub logins have at most 39 characters, GitLab usernames 255 but
// rarely over 40) and small enough that a value cannot swamp a log line.
const (
	maxApprovers     = 50
	maxLoginLength   = 100
	maxChangeRefSize = 200
	maxChangeURLSize = 2048
)

var (
	// A login: a letter or digit, then letters, digits and . _ @ + -, so
	// e-mail addresses and bot accounts ("renovate[bot]") fit; nothing a
	// log line, a chat message or a shell reads as markup.
	loginPattern     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@+-]*(\[bot\])?$`)
	changeRefPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/#!:@+-]*$`)
	commitSHAPattern = regexp.MustCompile(`^([0-9a-f]{40}|[0-9a-f]{64})$`)
)

// Approval is the reviewed change a run applies: who approved it, and
// which change and commit it is. Its fields are empty when the pipeline
// did not set them (a local run, jitd).
type Approval struct {
	ApprovedBy []string `json:"approved_by,omitempty"`
	ChangeRef  string   `json:"change_ref,omitempty"`
	CommitSHA  string   `json:"commit_sha,omitempty"`
	ChangeURL  string   `json:"change_url,omitempty"`
}

// IsZero reports whether no approval is recorded.
func (a Approval) IsZero() bool {
	return len(a.ApprovedBy) == 0 && a.ChangeRef == "" && a.CommitSHA == "" && a.ChangeURL == ""
}

// ApprovalFromEnv reads and validates the approval variables. It fails
// closed: a value that is set but malformed is an error naming the
// variable and the rule it breaks, not a value dropped with a warning,
// because an event whose approver silently went missing is what an audit
// cannot use, and the values come from the forge's API, so a malformed one
// means the pipeline is broken or tampered with. Errors never repeat the
// value: it is untrusted text, and a URL may carry a credential.
// Unset or blank variables are no error.
func ApprovalFromEnv(getenv func(string) string) (Approval, error) {
	var a Approval
	var err error
	if a.ApprovedBy, err = parseApprovers(getenv(EnvApprovedBy)); err != nil {
		return Approval{}, err
	}
	if a.ChangeRef, err = parseChangeRef(getenv(EnvChangeRef)); err != nil {
		return Approval{}, err
	}
	if a.CommitSHA, err = parseCommitSHA(getenv(EnvCommitSHA)); err != nil {
		return Approval{}, err
	}
	if a.ChangeURL, err = parseChangeURL(getenv(EnvChangeURL)); err != nil {
		return Approval{}, err
	}
	return a, nil
}

func parseApprovers(v string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for i, login := range strings.Split(v, ",") {
		login = strings.Trim(login, " \t")
		switch {
		case login == "":
			continue // "a,,b" and a trailing comma are how shell joins go wrong harmlessly
		case len(login) > maxLoginLength:
			return nil, fmt.Errorf("%s: login %d is longer than %d characters", EnvApprovedBy, i+1, maxLoginLength)
		case !loginPattern.MatchString(login):
			return nil, fmt.Errorf("%s: login %d has a character outside letters, digits and . _ @ + - "+
				"(or does not start with a letter or digit)", EnvApprovedBy, i+1)
		case seen[strings.ToLower(login)]:
			continue
		}
		seen[strings.ToLower(login)] = true
		out = append(out, login)
	}
	if len(out) > maxApprovers {
		return nil, fmt.Errorf("%s: more than %d logins", EnvApprovedBy, maxApprovers)
	}
	return out, nil
}

func parseChangeRef(v string) (string, error) {
	v = strings.TrimSpace(v)
	switch {
	case v == "":
		return "", nil
	case len(v) > maxChangeRefSize:
		return "", fmt.Errorf("%s: longer than %d characters", EnvChangeRef, maxChangeRefSize)
	case !changeRefPattern.MatchString(v):
		return "", fmt.Errorf("%s: has a character outside letters, digits and . _ / # ! : @ + - "+
			"(or does not start with a letter or digit)", EnvChangeRef)
	}
	return v, nil
}

func parseCommitSHA(v string) (string, error) {
	v = strings.ToLower(strings.TrimSpace(v))
	if v != "" && !commitSHAPattern.MatchString(v) {
		return "", fmt.Errorf("%s: not a commit id of 40 or 64 hexadecimal digits", EnvCommitSHA)
	}
	return v, nil
}

func parseChangeURL(v string) (string, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return "", nil
	}
	if len(v) > maxChangeURLSize {
		return "", fmt.Errorf("%s: longer than %d characters", EnvChangeURL, maxChangeURLSize)
	}
	for _, c := range []byte(v) {
		// Printable ASCII without spaces: a URL as forges write it, with
		// anything else percent-encoded.
		if c <= ' ' || c >= 0x7f {
			return "", fmt.Errorf("%s: has a space, a control character or a character outside ASCII "+
				"(percent-encode it)", EnvChangeURL)
		}
	}
	u, err := url.Parse(v)
	switch {
	case err != nil, u.Scheme != "https" && u.Scheme != "http", u.Host == "", u.Opaque != "":
		return "", fmt.Errorf("%s: not an absolute http(s) URL", EnvChangeURL)
	case u.User != nil:
		// Credentials in a URL would end up in every audit sink.
		return "", fmt.Errorf("%s: has a user name or password; give the change's address without them", EnvChangeURL)
	}
	return v, nil
}
