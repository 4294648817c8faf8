package azuresim

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1" //nolint:gosec // x5t is defined as a SHA-1 thumbprint
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Tokens are signed and parsed with golang-jwt; this file only holds the
// keys and the claim accessors the handlers share.

// signingKey is an RSA key that signs tokens, published in a JWKS with a
// self-signed certificate as Entra ID publishes its keys.
type signingKey struct {
	key  *rsa.PrivateKey
	kid  string // Entra uses the certificate thumbprint as kid
	x5t  string
	cert []byte // DER
}

func newSigningKey(commonName string) (*signingKey, error) {
	key, cert, err := newSelfSignedCertificate(commonName, x509.KeyUsageDigitalSignature)
	if err != nil {
		return nil, err
	}
	sum := sha1.Sum(cert.Raw) //nolint:gosec // thumbprint, not a security decision
	x5t := base64.RawURLEncoding.EncodeToString(sum[:])
	return &signingKey{key: key, kid: x5t, x5t: x5t, cert: cert.Raw}, nil
}

// newSelfSignedCertificate makes an RSA key and a certificate for it valid
// for a year.
func newSelfSignedCertificate(commonName string, usage x509.KeyUsage) (*rsa.PrivateKey, *x509.Certificate, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(1, 0, 0),
		KeyUsage:     usage,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parse certificate: %w", err)
	}
	return key, cert, nil
}

// jwk is the key's public half as a JSON Web Key.
func (k *signingKey) jwk(issuer string) map[string]any {
	pub := k.key.PublicKey
	m := map[string]any{
		"kty": "RSA",
		"use": "sig",
		"kid": k.kid,
		"x5t": k.x5t,
		"n":   base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		"e":   base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
		"x5c": []string{base64.StdEncoding.EncodeToString(k.cert)},
	}
	if issuer != "" {
		m["issuer"] = issuer
	}
	return m
}

// sign returns a compact RS256 JWS of claims, with the key's kid and x5t.
func (k *signingKey) sign(claims map[string]any) (string, error) {
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims(claims))
	t.Header["kid"] = k.kid
	t.Header["x5t"] = k.x5t
	s, err := t.SignedString(k.key)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return s, nil
}

// errTokenSignature reports a token this key did not sign.
var errTokenSignature = errors.New("token signature is not valid")

// verify checks token's RS256 signature against the key and returns its
// claims. It does not judge the claims: the handlers do, with the server's
// clock and Entra's error codes.
func (k *signingKey) verify(token string) (jwt.MapClaims, error) {
	return verifyJWT(token, &k.key.PublicKey, jwt.SigningMethodRS256.Alg())
}

// verifyJWT parses token, checks its signature with key under one of algs,
// and returns its claims unjudged.
func verifyJWT(token string, key any, algs ...string) (jwt.MapClaims, error) {
	claims := jwt.MapClaims{}
	_, err := jwt.NewParser(jwt.WithValidMethods(algs), jwt.WithoutClaimsValidation()).
		ParseWithClaims(token, claims, func(*jwt.Token) (any, error) { return key, nil })
	switch {
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return nil, errTokenSignature
	case err != nil:
		return nil, err
	}
	return claims, nil
}

// numericClaim reads a NumericDate claim (exp, nbf, iat).
func numericClaim(claims map[string]any, name string) (time.Time, bool) {
	var (
		d   *jwt.NumericDate
		err error
	)
	mc := jwt.MapClaims(claims)
	switch name {
	case "exp":
		d, err = mc.GetExpirationTime()
	case "nbf":
		d, err = mc.GetNotBefore()
	case "iat":
		d, err = mc.GetIssuedAt()
	default:
		return time.Time{}, false
	}
	if err != nil || d == nil {
		return time.Time{}, false
	}
	return d.Time, true
}

// stringClaim reads a string claim, empty when absent.
func stringClaim(claims map[string]any, name string) string {
	s, _ := claims[name].(string)
	return s
}

// audienceClaim returns aud whether it is a string or an array.
func audienceClaim(claims map[string]any) []string {
	aud, err := jwt.MapClaims(claims).GetAudience()
	if err != nil {
		return nil
	}
	return aud
}
