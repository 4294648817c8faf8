// Package simtest starts a local Azure (package azuresim) for one test.
package simtest

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
)

var (
	once    sync.Once
	ca      *azuresim.CA
	caFile  string
	initErr error
)

// setup creates the process-wide CA, writes it to a temporary file and
// points SSL_CERT_FILE at it. Go reads the system roots once per process,
// so every server in a process must share this one CA.
func setup() {
	ca, initErr = azuresim.NewCA()
	if initErr != nil {
		return
	}
	dir, err := os.MkdirTemp("", "azuresim-ca-")
	if err != nil {
		initErr = err
		return
	}
	caFile = filepath.Join(dir, "ca.pem")
	if initErr = ca.WriteCertFile(caFile); initErr != nil {
		return
	}
	initErr = os.Setenv("SSL_CERT_FILE", caFile)
}

// Start starts a local Azure for one test and closes it at cleanup. On first
// use in a process it creates one CA for the whole process, writes it to a
// temporary file and sets SSL_CERT_FILE. opts.CA is ignored: the server
// always uses the process-wide CA.
func Start(t testing.TB, opts azuresim.Options) *azuresim.Server {
	t.Helper()
	once.Do(setup)
	if initErr != nil {
		t.Fatalf("set up local Azure CA: %v", initErr)
	}
	opts.CA = ca
	srv, err := azuresim.Start(opts)
	if err != nil {
		t.Fatalf("start local Azure: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close local Azure: %v", err)
		}
	})
	return srv
}

// CAFile returns the process-wide CA file, creating it on first use.
func CAFile() string {
	once.Do(setup)
	return caFile
}
