package azure

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestResolveCloudBuiltin(t *testing.T) {
	tests := []struct {
		env, name, rm, aud, login string
	}{
		{"", "AzureCloud", "https://management.azure.com", "https://management.core.windows.net/", "https://login.microsoftonline.com/"},
		{"AzureUSGovernment", "AzureUSGovernment", "https://management.usgovcloudapi.net", "https://management.core.usgovcloudapi.net/", "https://login.microsoftonline.us/"},
		{"china", "AzureChinaCloud", "https://management.chinacloudapi.cn", "https://management.core.chinacloudapi.cn/", "https://login.chinacloudapi.cn/"},
		// The names azurerm v4 accepts besides the short ones.
		{"global", "AzureCloud", "https://management.azure.com", "https://management.core.windows.net/", "https://login.microsoftonline.com/"},
		{"canary", "AzureCloud", "https://management.azure.com", "https://management.core.windows.net/", "https://login.microsoftonline.com/"},
		{"usgovernmentl4", "AzureUSGovernment", "https://management.usgovcloudapi.net", "https://management.core.usgovcloudapi.net/", "https://login.microsoftonline.us/"},
		{"usgovernmentl5", "AzureUSGovernment", "https://management.usgovcloudapi.net", "https://management.core.usgovcloudapi.net/", "https://login.microsoftonline.us/"},
		{"DoD", "AzureUSGovernment", "https://management.usgovcloudapi.net", "https://management.core.usgovcloudapi.net/", "https://login.microsoftonline.us/"},
	}
	for _, tt := range tests {
		got, err := ResolveCloud(context.Background(), Config{Environment: tt.env}, nil)
		if err != nil {
			t.Fatalf("ResolveCloud(%q): %v", tt.env, err)
		}
		want := Cloud{Name: tt.name, ResourceManagerEndpoint: tt.rm, ResourceManagerAudience: tt.aud, AuthorityHost: tt.login}
		if got != want {
			t.Errorf("ResolveCloud(%q) = %+v, want %+v", tt.env, got, want)
		}
	}
}

func TestResolveCloudRefusesGermany(t *testing.T) {
	for _, name := range []string{"german", "germany", "mars"} {
		_, err := ResolveCloud(context.Background(), Config{Environment: name}, nil)
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.EnvVar != EnvEnvironment || !strings.Contains(err.Error(), name) {
			t.Errorf("ResolveCloud(%q) = %v, want a ConfigError on ARM_ENVIRONMENT", name, err)
		}
	}
	_, err := ResolveCloud(context.Background(), Config{Environment: "german"}, nil)
	if err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("german: %v, want the reason", err)
	}
}

// metadataServer answers /metadata/endpoints per api-version from answers
// and records the versions asked for.
func metadataServer(t *testing.T, answers map[string]string) (host string, hc *http.Client, asked *[]string) {
	t.Helper()
	var versions []string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metadata/endpoints" {
			http.NotFound(w, r)
			return
		}
		v := r.URL.Query().Get("api-version")
		versions = append(versions, v)
		body, ok := answers[v]
		if !ok {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":{"code":"InvalidApiVersion"}}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(body))
	}))
	// The untrusted-certificate test makes the server log a handshake error.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), srv.Client(), &versions
}

const metadata2022 = `{
  "name": "AzureStackHub",
  "resourceManager": "https://rm.local/",
  "authentication": {"loginEndpoint": "https://login.local/", "audiences": ["https://rm.local/audience", "https://other"]},
  "portal": "https://portal.local/"
}`

const metadata2019 = `[
  {"name": "AzureCloud", "resourceManager": "https://management.azure.com/",
   "authentication": {"loginEndpoint": "https://login.microsoftonline.com/", "audiences": ["https://management.core.windows.net/"]}},
  {"name": "AzureUSGovernment", "resourceManager": "https://management.usgovcloudapi.net/",
   "authentication": {"loginEndpoint": "https://login.microsoftonline.us/", "audiences": ["https://management.core.usgovcloudapi.net/"]}}
]`

func TestResolveCloudDiscovery(t *testing.T) {
	tests := []struct {
		name    string
		answers map[string]string
		env     string
		want    Cloud
		asked   []string
	}{
		{
			name:    "2022-09-01 object",
			answers: map[string]string{"2022-09-01": metadata2022},
			want: Cloud{Name: "AzureStackHub", ResourceManagerEndpoint: "https://rm.local/",
				ResourceManagerAudience: "https://rm.local/audience", AuthorityHost: "https://login.local/", Custom: true},
			asked: []string{"2022-09-01"},
		},
		{
			name:    "2019-05-01 list picks the environment's cloud",
			answers: map[string]string{"2019-05-01": metadata2019},
			env:     "usgovernment",
			want: Cloud{Name: "AzureUSGovernment", ResourceManagerEndpoint: "https://management.usgovcloudapi.net/",
				ResourceManagerAudience: "https://management.core.usgovcloudapi.net/", AuthorityHost: "https://login.microsoftonline.us/", Custom: true},
			asked: []string{"2022-09-01", "2019-05-01"},
		},
		{
			name:    "2022-09-01 answering a list falls back",
			answers: map[string]string{"2022-09-01": metadata2019, "2019-05-01": metadata2019},
			want: Cloud{Name: "AzureCloud", ResourceManagerEndpoint: "https://management.azure.com/",
				ResourceManagerAudience: "https://management.core.windows.net/", AuthorityHost: "https://login.microsoftonline.com/", Custom: true},
			asked: []string{"2022-09-01", "2019-05-01"},
		},
		{
			name:    "a single-entry list is taken whatever its name",
			answers: map[string]string{"2019-05-01": "[" + metadata2022 + "]"},
			env:     "china",
			want: Cloud{Name: "AzureStackHub", ResourceManagerEndpoint: "https://rm.local/",
				ResourceManagerAudience: "https://rm.local/audience", AuthorityHost: "https://login.local/", Custom: true},
			asked: []string{"2022-09-01", "2019-05-01"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host, hc, asked := metadataServer(t, tt.answers)
			got, err := ResolveCloud(context.Background(), Config{MetadataHost: host, Environment: tt.env}, hc)
			if err != nil {
				t.Fatalf("ResolveCloud: %v", err)
			}
			if got != tt.want {
				t.Errorf("ResolveCloud = %+v, want %+v", got, tt.want)
			}
			if strings.Join(*asked, ",") != strings.Join(tt.asked, ",") {
				t.Errorf("asked api-versions %v, want %v", *asked, tt.asked)
			}
		})
	}
}

func TestResolveCloudDiscoveryErrors(t *testing.T) {
	tests := []struct {
		name    string
		answers map[string]string
		want    []string // substrings of the error
	}{
		{"bad JSON", map[string]string{"2022-09-01": `{"name": `}, []string{"2022-09-01", "malformed JSON"}},
		{"neither version", map[string]string{}, []string{"HTTP 400"}},
		{"garbage list", map[string]string{"2019-05-01": `<html>`}, []string{"2019-05-01", "malformed JSON"}},
		{"missing fields", map[string]string{"2022-09-01": `{"name":"x","authentication":{}}`},
			[]string{"missing resourceManager, authentication.loginEndpoint, authentication.audiences"}},
		{"plain http endpoint", map[string]string{"2022-09-01": strings.Replace(metadata2022, "https://rm.local/", "http://rm.local/", 1)},
			[]string{"resourceManager", "not an https URL"}},
		{"no matching cloud", map[string]string{"2019-05-01": metadata2019 + ""}, nil},
		{"empty list", map[string]string{"2019-05-01": `[]`}, []string{"empty"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host, hc, _ := metadataServer(t, tt.answers)
			env := ""
			if tt.name == "no matching cloud" {
				env = "china"
				tt.want = []string{`no cloud named "AzureChinaCloud"`, "AzureCloud, AzureUSGovernment"}
			}
			_, err := ResolveCloud(context.Background(), Config{MetadataHost: host, Environment: env}, hc)
			if err == nil {
				t.Fatal("ResolveCloud succeeded")
			}
			msg := err.Error()
			for _, w := range append(tt.want, host, "ARM_METADATA_HOSTNAME") {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error kind: got %v, want ErrInvalid", err)
			}
		})
	}
}

func TestResolveCloudUnreachable(t *testing.T) {
	// A port nobody listens on: bind one, then close it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := l.Addr().String()
	l.Close()

	_, err = ResolveCloud(context.Background(), Config{MetadataHost: host}, nil)
	if err == nil {
		t.Fatal("ResolveCloud succeeded against a closed port")
	}
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "unreachable") || !strings.Contains(err.Error(), host) {
		t.Errorf("got %v, want an ErrUnavailable naming %s as unreachable", err, host)
	}
}

func TestResolveCloudUntrustedCertificate(t *testing.T) {
	host, _, _ := metadataServer(t, map[string]string{"2022-09-01": metadata2022})
	// nil: the system trust store, which does not hold httptest's CA.
	_, err := ResolveCloud(context.Background(), Config{MetadataHost: host}, nil)
	if err == nil {
		t.Fatal("ResolveCloud trusted httptest's certificate")
	}
	for _, w := range []string{"not trusted", "SSL_CERT_FILE", host} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
}

func TestResolveCloudRespectsContext(t *testing.T) {
	host, hc, _ := metadataServer(t, map[string]string{"2022-09-01": metadata2022})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ResolveCloud(ctx, Config{MetadataHost: host}, hc); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}
