package azure

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
)

// responseError builds the *azcore.ResponseError azcore returns for an ARM
// error answer.
func responseError(status int, code, message string) error {
	body := fmt.Sprintf(`{"error":{"code":%q,"message":%q}}`, code, message)
	req, _ := http.NewRequest(http.MethodPut, "https://management.azure.com/subscriptions/x", nil)
	resp := &http.Response{
		StatusCode: status,
		Status:     http.StatusText(status),
		Header:     http.Header{"Content-Type": {"application/json"}},
		Body:       io.NopCloser(bytes.NewBufferString(body)),
		Request:    req,
	}
	return runtime.NewResponseError(resp)
}

func TestNewErrorFromResponses(t *testing.T) {
	tests := []struct {
		status int
		code   string
		want   error
	}{
		{404, "ResourceNotFound", ErrNotFound},
		{404, "NotFound", ErrNotFound},
		{409, "AnotherOperationInProgress", ErrConflict},
		{409, "Conflict", ErrConflict},
		{400, "SecurityRuleConflict", ErrConflict},
		{429, "RetryableErrorDueToAnotherOperation", ErrThrottled},
		{429, "TooManyRequests", ErrThrottled},
		{403, "AuthorizationFailed", ErrForbidden},
		{401, "InvalidAuthenticationToken", ErrUnauthorized},
		{412, "PreconditionFailed", ErrPreconditionFailed},
		{400, "ResourceCannotContainAddressPrefixesFromDifferentAddressFamilies", ErrInvalid},
		{400, "InvalidRequestFormat", ErrInvalid},
		{500, "InternalServerError", ErrUnavailable},
		{503, "", ErrUnavailable},
		// Failed long-running operations carry the status poll's 200.
		{200, "SecurityRuleConflict", ErrConflict},
		{200, "InternalServerError", ErrUnavailable},
		{200, "SomethingNew", ErrInvalid},
	}
	sentinels := []error{ErrNotFound, ErrConflict, ErrThrottled, ErrForbidden, ErrUnauthorized, ErrPreconditionFailed, ErrInvalid, ErrUnavailable}
	for _, tt := range tests {
		err := newError("put security rule", "/subscriptions/x/rule", responseError(tt.status, tt.code, "the reason"))
		for _, s := range sentinels {
			if got := errors.Is(err, s); got != errors.Is(s, tt.want) {
				t.Errorf("%d %s: errors.Is(%v) = %v", tt.status, tt.code, s, got)
			}
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("%T is not an *Error", err)
		}
		if e.StatusCode != tt.status || e.Code != tt.code || e.Message != "the reason" || e.ResourceID != "/subscriptions/x/rule" {
			t.Errorf("%d %s: got %+v", tt.status, tt.code, e)
		}
		if !strings.Contains(e.Error(), "the reason") || !strings.Contains(e.Error(), "put security rule /subscriptions/x/rule") {
			t.Errorf("message %q lacks the operation, resource or reason", e)
		}
	}
}

func TestNewErrorKeepsExistingError(t *testing.T) {
	inner := &Error{Kind: KindNotFound, Message: "gone"}
	wrapped := fmt.Errorf("context: %w", inner)
	// The same value must come back, not a new wrapper around it.
	if got := newError("op", "id", wrapped); got != wrapped { //nolint:errorlint // identity check, not error matching
		t.Errorf("newError rewrapped an *Error: %v", got)
	}
	if newError("op", "id", nil) != nil {
		t.Error("newError(nil) != nil")
	}
}

func TestNewErrorTransportAndContext(t *testing.T) {
	refused := &url.Error{Op: "Get", URL: "https://x", Err: &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}}
	if err := newError("get", "id", refused); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("connection refused: %v", err)
	}
	err := newError("get", "id", fmt.Errorf("polling: %w", context.Canceled))
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnavailable) {
		t.Errorf("cancellation: %v (want context.Canceled, not unavailable)", err)
	}
}

func TestCredentialErrorsAreRedacted(t *testing.T) {
	c := &classifiedCredential{method: AuthClientSecret, clientID: testClient, tenantID: testTenant,
		secrets: []string{"hunter2hunter2", ""}}
	err := c.classify(errors.New("ClientSecretCredential: invalid_client: secret hunter2hunter2 rejected"))
	mapped := newError("acquire a token", "", err)
	if !errors.Is(mapped, ErrUnauthorized) {
		t.Errorf("got %v, want ErrUnauthorized", mapped)
	}
	if msg := mapped.Error(); strings.Contains(msg, "hunter2") || !strings.Contains(msg, testClient) {
		t.Errorf("message %q leaks the secret or omits the client", msg)
	}

	tlsErr := c.classify(errors.New("Post \"https://login/token\": tls: failed to verify certificate: x509: certificate signed by unknown authority"))
	if mapped := newError("acquire", "", tlsErr); !errors.Is(mapped, ErrUnavailable) || !strings.Contains(mapped.Error(), "SSL_CERT_FILE") {
		t.Errorf("untrusted certificate: %v", mapped)
	}
}

func TestIdentityFromToken(t *testing.T) {
	tok := fakeJWT(`{"tid":"t1","oid":"o1","appid":"a1"}`)
	id, err := identityFromToken(tok)
	if err != nil || id != (Identity{TenantID: "t1", ObjectID: "o1", ClientID: "a1"}) {
		t.Errorf("v1 token: %+v, %v", id, err)
	}
	id, err = identityFromToken(fakeJWT(`{"tid":"t1","oid":"o1","azp":"a2"}`))
	if err != nil || id.ClientID != "a2" {
		t.Errorf("v2 token: %+v, %v", id, err)
	}
	for _, bad := range []string{"", "opaque", "a.!!!.c", fakeJWT(`[1]`)} {
		if _, err := identityFromToken(bad); err == nil {
			t.Errorf("identityFromToken(%q) succeeded", bad)
		}
	}
}
