package api_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/api"
	"github.com/cyclerhq/cycler/client"
)

// testCA is a throwaway certificate authority written to a temp dir.
type testCA struct {
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // PEM of cert
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate CA key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("create CA cert: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parse CA cert: %v", err)
	}
	ca := &testCA{dir: t.TempDir(), cert: cert, key: key}
	ca.file = writePEM(t, ca.dir, name+"-ca.pem", "CERTIFICATE", der)
	return ca
}

// issue signs a leaf certificate for a server (127.0.0.1, localhost) or a
// client and returns the cert and key file paths.
func (ca *testCA) issue(t *testing.T, name string, usage x509.ExtKeyUsage) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatalf("serial: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatalf("create cert: %v", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("marshal key: %v", err)
	}
	return writePEM(t, ca.dir, name+".pem", "CERTIFICATE", der),
		writePEM(t, ca.dir, name+"-key.pem", "PRIVATE KEY", keyDER)
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
	return path
}

func TestTLSEndToEnd(t *testing.T) {
	ca := newTestCA(t, "cycler-test")
	certFile, keyFile := ca.issue(t, "server", x509.ExtKeyUsageServerAuth)
	s, _ := newTestServer(t, func(c *api.Config) {
		c.TLS = &api.TLSConfig{CertFile: certFile, KeyFile: keyFile}
	})
	serve(t, s)
	other := newTestCA(t, "someone-else")

	tests := []struct {
		name    string
		give    client.Config
		wantErr string // substring; empty means success
	}{
		{"trusted CA, scheme inferred", client.Config{Addr: s.Addr(), CACertFile: ca.file, Token: opSecret}, ""},
		{"trusted CA, explicit https", client.Config{Addr: "https://" + s.Addr(), CACertFile: ca.file, Token: opSecret}, ""},
		{"untrusted CA", client.Config{Addr: s.Addr(), CACertFile: other.file, Token: opSecret}, "cannot verify the TLS certificate"},
		{"system roots", client.Config{Addr: "https://" + s.Addr(), Token: opSecret}, "cannot verify the TLS certificate"},
		{"plain http to a TLS server", client.Config{Addr: "http://" + s.Addr(), Token: opSecret}, "unexpected HTTP 400"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, tt.give)
			var out map[string]string
			err := c.Do(context.Background(), "GET", "/v1/op", nil, &out)
			if got := errString(err); !strings.Contains(got, tt.wantErr) || (tt.wantErr == "") != (err == nil) {
				t.Fatalf("Do error = %q, want %q", got, tt.wantErr)
			}
			if tt.wantErr == "" && out["caller"] != "ops" {
				t.Errorf("caller = %q, want ops", out["caller"])
			}
		})
	}
}

func TestTLSClientCertificates(t *testing.T) {
	ca := newTestCA(t, "cycler-test")
	certFile, keyFile := ca.issue(t, "server", x509.ExtKeyUsageServerAuth)
	clientCert, clientKey := ca.issue(t, "cyclerctl", x509.ExtKeyUsageClientAuth)
	other := newTestCA(t, "rogue")
	rogueCert, rogueKey := other.issue(t, "rogue-client", x509.ExtKeyUsageClientAuth)
	s, _ := newTestServer(t, func(c *api.Config) {
		c.TLS = &api.TLSConfig{CertFile: certFile, KeyFile: keyFile, ClientCAFile: ca.file}
	})
	serve(t, s)

	tests := []struct {
		name     string
		cert     string
		key      string
		token    string
		wantCode string // api error code expected, if any
		wantErr  bool
	}{
		{"no client certificate", "", "", opSecret, "", true},
		{"certificate from another CA", rogueCert, rogueKey, opSecret, "", true},
		{"valid certificate", clientCert, clientKey, opSecret, "", false},
		{"valid certificate still needs a token", clientCert, clientKey, "", api.CodeUnauthorized, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, client.Config{
				Addr: s.Addr(), Token: tt.token, CACertFile: ca.file,
				ClientCertFile: tt.cert, ClientKeyFile: tt.key,
			})
			err := c.Do(context.Background(), "GET", "/v1/op", nil, nil)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Do error = %v, want error %v", err, tt.wantErr)
			}
			var ae *api.Error
			errors.As(err, &ae)
			if code := apiCode(ae); code != tt.wantCode {
				t.Errorf("api error code = %q, want %q (err %v)", code, tt.wantCode, err)
			}
		})
	}
}

func TestTLSClientCAFileMustHoldCertificates(t *testing.T) {
	ca := newTestCA(t, "cycler-test")
	certFile, keyFile := ca.issue(t, "server", x509.ExtKeyUsageServerAuth)
	junk := filepath.Join(t.TempDir(), "junk.pem")
	if err := os.WriteFile(junk, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := api.New(api.Config{Tokens: testTokens(), TLS: &api.TLSConfig{CertFile: certFile, KeyFile: keyFile, ClientCAFile: junk}})
	if err == nil || !strings.Contains(err.Error(), "holds no PEM certificate") {
		t.Errorf("New = %v, want a no PEM certificate error", err)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func apiCode(e *api.Error) string {
	if e == nil {
		return ""
	}
	return e.Code
}
