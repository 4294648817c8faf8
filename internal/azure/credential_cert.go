package azure

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"software.sslmate.com/src/go-pkcs12"
)

// clientCertificate is a parsed client certificate: the chain, leaf first,
// and its private key.
type clientCertificate struct {
	certs []*x509.Certificate
	key   crypto.PrivateKey
}

// certificate reads and parses the client certificate c configures, from
// client_certificate (base64 PKCS#12, azurerm v4) or client_certificate_path
// (PKCS#12 or PEM). Errors are *ConfigError on the setting at fault and never
// quote the password or the bundle.
func (c Config) certificate() (clientCertificate, error) {
	field, env := "client_certificate_path", EnvClientCertificatePath
	var data []byte
	if c.ClientCertificate != "" {
		field, env = "client_certificate", EnvClientCertificate
		// azurerm decodes standard base64; tolerate the line breaks that
		// `base64` wraps its output with.
		raw := strings.Join(strings.Fields(c.ClientCertificate), "")
		var err error
		if data, err = base64.StdEncoding.DecodeString(raw); err != nil {
			return clientCertificate{}, &ConfigError{Field: field, EnvVar: env,
				Message: "is not base64 (it holds a PKCS#12 bundle, e.g. `base64 -w0 cert.pfx`): " + err.Error()}
		}
	} else {
		var err error
		if data, err = os.ReadFile(c.ClientCertificatePath); err != nil {
			return clientCertificate{}, &ConfigError{Field: field, EnvVar: env, Message: "cannot be read: " + err.Error()}
		}
	}
	cc, err := parseCertificate(data, c.ClientCertificatePassword)
	if err != nil {
		return clientCertificate{}, &ConfigError{Field: field, EnvVar: env, Message: err.Error()}
	}
	return cc, nil
}

// parseCertificate parses a PEM file or a PKCS#12 bundle. azidentity's
// parser reads PEM and PKCS#12 with the legacy (3DES/RC2) encryption that
// azurerm reads; PKCS#12 files from OpenSSL 3 or a Key Vault export use
// AES and PBKDF2, which only go-pkcs12 decodes, so that is tried next.
func parseCertificate(data []byte, password string) (clientCertificate, error) {
	certs, key, err := azidentity.ParseCertificates(data, []byte(password))
	if err == nil {
		return clientCertificate{certs: certs, key: key}, nil
	}
	if bytes.Contains(data, []byte("-----BEGIN")) {
		return clientCertificate{}, fmt.Errorf("is not a usable PEM certificate and private key: %s", firstLine(err.Error()))
	}
	pk, leaf, chain, err2 := pkcs12.DecodeChain(data, password)
	switch {
	case errors.Is(err2, pkcs12.ErrIncorrectPassword):
		return clientCertificate{}, errors.New("cannot be decrypted: the password (client_certificate_password, " + EnvClientCertificatePass + ") is wrong or missing")
	case err2 != nil:
		return clientCertificate{}, fmt.Errorf("is neither a PKCS#12 bundle nor PEM: %s", firstLine(err2.Error()))
	}
	key, ok := pk.(crypto.PrivateKey)
	if !ok || key == nil {
		return clientCertificate{}, errors.New("holds no private key")
	}
	return clientCertificate{certs: append([]*x509.Certificate{leaf}, chain...), key: key}, nil
}
