package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"strings"
)

// maxSecretFileBytes bounds a secret file: it holds one secret, not a
// document.
const maxSecretFileBytes = 64 << 10

// readSecretFile reads a secret from path, trimming surrounding white space
// (editors add a trailing newline). The secret must be at least
// minSecretLen chars. Errors never include the secret.
func readSecretFile(path string) (string, error) {
	f, err := openRegular(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFileBytes+1))
	if err != nil {
		return "", fmt.Errorf("reading secret file %s: %w", path, err)
	}
	if len(b) > maxSecretFileBytes {
		return "", fmt.Errorf("secret file %s is larger than %d bytes; it should hold only the secret", path, maxSecretFileBytes)
	}
	s := strings.TrimSpace(string(b))
	if n := len([]rune(s)); n < minSecretLen {
		return "", fmt.Errorf("secret file %s holds a secret of %d chars; secrets must be at least %d chars", path, n, minSecretLen)
	}
	return s, nil
}

// openRegular opens path for reading if it is a regular file. Refusing
// devices and FIFOs keeps a mistyped path from blocking or reading forever.
func openRegular(path string) (*os.File, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	return os.Open(path)
}

// pathErr shortens an *fs.PathError to its cause: the path is already in
// the problem's value.
func pathErr(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// readable checks that the file at v, when set, can be opened.
func (c *checker) readable(path, v string) {
	if v == "" {
		return
	}
	f, err := openRegular(v)
	if err != nil {
		c.bad(path, quote(v), "cannot be read: "+pathErr(err))
		return
	}
	f.Close()
}

// secretFile checks that the secret file at v, when set, holds a usable
// secret.
func (c *checker) secretFile(path, v string) {
	if v == "" {
		return
	}
	if _, err := readSecretFile(v); err != nil {
		c.bad(path, quote(v), "cannot be used: "+pathErr(err))
	}
}

// program checks that a program, when set, is installed: an absolute path
// must be an executable file, a bare name must be on PATH.
func (c *checker) program(path, v string) {
	if strings.TrimSpace(v) == "" {
		return
	}
	if _, err := exec.LookPath(v); err != nil {
		c.bad(path, quote(v), "is not an installed program: "+lookPathErr(err))
	}
}

// lookPathErr shortens an exec.LookPath error to its cause.
func lookPathErr(err error) string {
	var ee *exec.Error
	if errors.As(err, &ee) {
		return ee.Err.Error()
	}
	return pathErr(err)
}

// checkFiles checks the TLS and secret files of the api block.
func (a API) checkFiles(c *checker) {
	if a.TLS != nil {
		c.readable("api.tls.cert_file", a.TLS.CertFile)
		c.readable("api.tls.key_file", a.TLS.KeyFile)
		c.readable("api.tls.client_ca_file", a.TLS.ClientCAFile)
	}
	for _, t := range a.Tokens {
		c.secretFile(labelPath("api.token", t.Name)+".secret_file", t.SecretFile)
	}
}

// checkFiles checks the CA file of the consul block.
func (k Consul) checkFiles(c *checker) {
	if k.TLS != nil {
		c.readable("consul.tls.ca_file", k.TLS.CAFile)
	}
}
