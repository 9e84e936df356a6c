//go:build integration

package integration

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/integration/harness"
)

const (
	opSecret    = "operator-secret-0123456789"
	agentSecret = "agent-secret-0123456789ab"
)

// TestAPIAuthAndTLS runs a real cyclerd server with TLS (a CA generated
// here), then checks the auth contract through the real listener: no token
// 401, a wrong token 401, an agent token on an operator route 403, each with
// the JSON envelope, and cyclerctl works end to end with --ca-cert.
func TestAPIAuthAndTLS(t *testing.T) {
	dir := t.TempDir()
	caPEM, certFile, keyFile := writeTestPKI(t, dir)
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		harness.Fatal(t, err)
	}
	apiAddr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	cfg := fmt.Sprintf(`
node_id  = "tls1"
data_dir = %q
api {
  listen = %q
  tls {
    cert_file = %q
    key_file  = %q
  }
  token "ops" {
    secret = %q
    scopes = ["operator"]
  }
  token "fleet" {
    secret = %q
    scopes = ["agent"]
  }
}
raft {
  bind   = "127.0.0.1:%d"
  timing = "fast"
}
`, filepath.Join(dir, "data"), apiAddr, certFile, keyFile, opSecret, agentSecret, harness.FreePort(t))
	srv := harness.StartCyclerd(t, harness.CyclerdOptions{Role: "server", Config: cfg, APIAddr: apiAddr, TLS: true})

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	t.Cleanup(hc.CloseIdleConnections)

	tests := []struct {
		name       string
		token      string
		wantStatus int
		wantCode   string
	}{
		{name: "no token", wantStatus: 401, wantCode: "unauthorized"},
		{name: "wrong token", token: "not-a-real-token-at-all", wantStatus: 401, wantCode: "unauthorized"},
		{name: "agent token on operator route", token: agentSecret, wantStatus: 403, wantCode: "forbidden"},
		{name: "operator token", token: opSecret, wantStatus: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, srv.URL()+"/v1/version", nil)
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			resp, err := hc.Do(req)
			if err != nil {
				harness.Fatal(t, err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				harness.Fatalf(t, "status = %d; want %d", resp.StatusCode, tt.wantStatus)
			}
			if tt.wantCode == "" {
				return
			}
			var env struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
				harness.Fatalf(t, "body is not the JSON envelope: %v", err)
			}
			if env.Error.Code != tt.wantCode || env.Error.Message == "" {
				harness.Fatalf(t, "envelope = %+v; want code %q and a message", env.Error, tt.wantCode)
			}
		})
	}

	// A client that does not trust the CA is refused by TLS itself.
	if _, err := http.Get(srv.URL() + "/v1/health"); err == nil {
		harness.Fatal(t, "plain client accepted the test CA's certificate")
	}

	ctl := harness.BuildBinary(t, "./cmd/cyclerctl")
	out, err := runCtl(ctl, "--addr", apiAddr, "--ca-cert", caFile, "--token", opSecret, "version")
	if err != nil || !strings.Contains(out, "server") || !strings.Contains(out, "tls1") {
		harness.Fatalf(t, "cyclerctl version over TLS: %v\n%s", err, out)
	}
	out, err = runCtl(ctl, "--addr", apiAddr, "--ca-cert", caFile, "--token", agentSecret, "status")
	if err == nil || !strings.Contains(out, "operator") {
		harness.Fatalf(t, "cyclerctl with an agent token: err=%v, want a scope error naming operator\n%s", err, out)
	}
}

func runCtl(bin string, args ...string) (string, error) {
	var buf bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &buf, &buf
	cmd.Env = append(os.Environ(), "CYCLER_ADDR=", "CYCLER_TOKEN=")
	err := cmd.Run()
	return buf.String(), err
}

// writeTestPKI makes a CA and a server certificate for 127.0.0.1 signed by
// it, and returns the CA PEM and the cert and key paths.
func writeTestPKI(t *testing.T, dir string) (caPEM []byte, certFile, keyFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		harness.Fatal(t, err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cycler test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		harness.Fatal(t, err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		harness.Fatal(t, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "cyclerd"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		KeyUsage:    x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		harness.Fatal(t, err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		harness.Fatal(t, err)
	}
	certFile, keyFile = filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		harness.Fatal(t, err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		harness.Fatal(t, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), certFile, keyFile
}
