package azuresim

import "time"

// IssueAccessTokenForTest signs an access token for resource with the given
// lifetime, so tests can present expired tokens.
func (s *Server) IssueAccessTokenForTest(resource string, issuedAt, expires time.Time) (string, error) {
	return s.issueAccessToken(resource, "1", issuedAt, expires)
}

// SignWithForeignKeyForTest signs ARM-looking claims with a key this server
// does not trust.
func SignWithForeignKeyForTest(claims map[string]any) (string, error) {
	k, err := newSigningKey("foreign")
	if err != nil {
		return "", err
	}
	return k.sign(claims)
}

// SetPageSizeForTest makes lists page after n items.
func (s *Server) SetPageSizeForTest(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pageSize = n
}
