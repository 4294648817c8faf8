package azure

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// Kind classifies a failure by what a caller can do about it.
type Kind int

// Kinds of failure. Each has a sentinel error (ErrNotFound, ...) that
// errors.Is matches against an *Error of that kind.
const (
	KindUnknown Kind = iota
	KindNotFound
	KindConflict
	KindThrottled
	KindForbidden
	KindUnauthorized
	KindPreconditionFailed
	KindInvalid
	KindUnavailable
)

// Sentinel errors, one per Kind, for errors.Is.
var (
	ErrNotFound           = errors.New("not found")
	ErrConflict           = errors.New("conflict")
	ErrThrottled          = errors.New("throttled")
	ErrForbidden          = errors.New("forbidden")
	ErrUnauthorized       = errors.New("unauthorized")
	ErrPreconditionFailed = errors.New("precondition failed")
	ErrInvalid            = errors.New("invalid request")
	ErrUnavailable        = errors.New("service unavailable")
)

func (k Kind) sentinel() error {
	switch k {
	case KindNotFound:
		return ErrNotFound
	case KindConflict:
		return ErrConflict
	case KindThrottled:
		return ErrThrottled
	case KindForbidden:
		return ErrForbidden
	case KindUnauthorized:
		return ErrUnauthorized
	case KindPreconditionFailed:
		return ErrPreconditionFailed
	case KindInvalid:
		return ErrInvalid
	case KindUnavailable:
		return ErrUnavailable
	}
	return nil
}

// String returns the kind's sentinel text ("not found", ...).
func (k Kind) String() string {
	if s := k.sentinel(); s != nil {
		return s.Error()
	}
	return "unknown"
}

// Error is a failed Azure operation. Code and Message are Azure's (for
// example "SecurityRuleConflict"); StatusCode is 0 when no HTTP response was
// received, and 200 for a long-running operation that ended in failure.
type Error struct {
	Kind       Kind
	StatusCode int
	Code       string
	Message    string
	ResourceID string
	// Op says what was being done, e.g. "put security rule".
	Op string
	// Err is the underlying SDK or network error.
	Err error
}

// Error renders the operation, the resource, Azure's code and message. It is
// built from those fields only: the SDK errors it wraps may carry whole
// response bodies.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Op)
	if e.ResourceID != "" {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(e.ResourceID)
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	switch {
	case e.Code != "" && e.StatusCode != 0:
		fmt.Fprintf(&b, "%s (HTTP %d)", e.Code, e.StatusCode)
	case e.Code != "":
		b.WriteString(e.Code)
	case e.StatusCode != 0:
		fmt.Fprintf(&b, "HTTP %d", e.StatusCode)
	case e.Message == "":
		b.WriteString(e.Kind.String())
	default:
		b.WriteString(e.Message)
		return b.String()
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	return b.String()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is the sentinel of e's Kind.
func (e *Error) Is(target error) bool {
	s := e.Kind.sentinel()
	return s != nil && target == s
}

// Codes Azure returns while another write holds the NSG.
const (
	codeAnotherOperationInProgress          = "AnotherOperationInProgress"
	codeRetryableErrorDueToAnotherOperation = "RetryableErrorDueToAnotherOperation"
)

// newError maps err, returned while doing op on resourceID, to an *Error.
// An error that already is (or wraps) an *Error is returned unchanged.
func newError(op, resourceID string, err error) error {
	if err == nil {
		return nil
	}
	var existing *Error
	if errors.As(err, &existing) {
		return err
	}
	e := &Error{Op: op, ResourceID: resourceID, Err: err}

	var respErr *azcore.ResponseError
	var credErr *credentialError
	switch {
	case errors.As(err, &credErr):
		e.Kind, e.Message = credErr.kind, credErr.message
	case errors.As(err, &respErr):
		e.StatusCode = respErr.StatusCode
		e.Code = respErr.ErrorCode
		e.Message = responseMessage(respErr.RawResponse)
		e.Kind = kindFor(respErr.StatusCode, respErr.ErrorCode)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		// Not Azure's doing: keep the kind unknown so nobody retries a
		// deliberate cancellation, and let errors.Is see the context error.
		e.Message = err.Error()
	default:
		e.Kind = KindUnavailable
		e.Message = transportMessage(err)
	}
	return e
}

// kindFor classifies an ARM status and error code. A failed long-running
// operation arrives with the status poll's 200, so its code decides.
func kindFor(status int, code string) Kind {
	switch code {
	case "NotFound", "ResourceNotFound", "ResourceGroupNotFound", "SubscriptionNotFound":
		return KindNotFound
	case "SecurityRuleConflict", "Conflict", codeAnotherOperationInProgress:
		return KindConflict
	case codeRetryableErrorDueToAnotherOperation, "TooManyRequests":
		return KindThrottled
	case "AuthorizationFailed", "LinkedAuthorizationFailed":
		return KindForbidden
	case "InvalidAuthenticationToken", "ExpiredAuthenticationToken", "AuthenticationFailed":
		return KindUnauthorized
	case "PreconditionFailed":
		return KindPreconditionFailed
	case "InternalServerError", "ServiceUnavailable", "GatewayTimeout", "RetryableError":
		return KindUnavailable
	}
	switch {
	case status == http.StatusNotFound:
		return KindNotFound
	case status == http.StatusConflict:
		return KindConflict
	case status == http.StatusTooManyRequests:
		return KindThrottled
	case status == http.StatusForbidden:
		return KindForbidden
	case status == http.StatusUnauthorized:
		return KindUnauthorized
	case status == http.StatusPreconditionFailed:
		return KindPreconditionFailed
	case status == http.StatusRequestTimeout || status >= 500:
		return KindUnavailable
	case status >= 400:
		return KindInvalid
	case status == http.StatusOK && code != "":
		// A long-running operation that failed with a code we do not
		// know: Azure rejected the request.
		return KindInvalid
	}
	return KindUnknown
}

// armErrorBody is ARM's error envelope.
type armErrorBody struct {
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	// Some long-running operation status bodies carry the error at the
	// top level of "error" and others under "properties.error"; the first
	// shape is by far the common one, so only it is decoded.
}

// responseMessage extracts ARM's error message from a response, or "".
func responseMessage(resp *http.Response) string {
	if resp == nil {
		return ""
	}
	body, err := runtime.Payload(resp)
	if err != nil || len(body) == 0 {
		return ""
	}
	var env armErrorBody
	if json.Unmarshal(body, &env) == nil && env.Error != nil {
		return env.Error.Message
	}
	return ""
}

// transportMessage describes a failure to reach Azure at all, with a hint
// for the one case users can fix themselves: an untrusted certificate.
func transportMessage(err error) string {
	if isCertificateError(err) {
		return "TLS certificate not trusted (" + rootCause(err) + "); add the issuing CA to the system trust store or set SSL_CERT_FILE to a PEM file containing it"
	}
	return rootCause(err)
}

// isCertificateError reports whether err is a TLS certificate verification
// failure. MSAL flattens the errors it returns to text, hence the fallback.
func isCertificateError(err error) bool {
	var verr *tls.CertificateVerificationError
	var uae x509.UnknownAuthorityError
	var hne x509.HostnameError
	var cie x509.CertificateInvalidError
	if errors.As(err, &verr) || errors.As(err, &uae) || errors.As(err, &hne) || errors.As(err, &cie) {
		return true
	}
	return strings.Contains(err.Error(), "x509: ")
}

// rootCause returns the innermost error's text, which for network errors is
// the useful part ("connection refused") without the URL and method.
func rootCause(err error) string {
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return opErr.Error()
	}
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}

// credentialError is a token acquisition failure, already classified and
// described without secrets by the credential wrapper.
type credentialError struct {
	kind    Kind
	message string
	err     error
}

func (e *credentialError) Error() string { return e.message }
func (e *credentialError) Unwrap() error { return e.err }

// authFailureMessage describes a failed token request from Entra's answer:
// its error_description's first line carries the AADSTS code and reason but
// never the credential.
func authFailureMessage(err error) string {
	var afe *azidentity.AuthenticationFailedError
	if !errors.As(err, &afe) || afe.RawResponse == nil {
		return ""
	}
	body, rerr := runtime.Payload(afe.RawResponse)
	if rerr != nil {
		return ""
	}
	var tokenErr struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if json.Unmarshal(body, &tokenErr) != nil {
		return fmt.Sprintf("token endpoint answered HTTP %d", afe.RawResponse.StatusCode)
	}
	desc, _, _ := strings.Cut(tokenErr.Description, "\n")
	desc = strings.TrimSpace(desc)
	switch {
	case desc != "":
		return desc
	case tokenErr.Error != "":
		return tokenErr.Error
	}
	return fmt.Sprintf("token endpoint answered HTTP %d", afe.RawResponse.StatusCode)
}
