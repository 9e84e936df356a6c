//go:build integration

package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/api"
	"github.com/cyclerhq/cycler/controller"
	"github.com/cyclerhq/cycler/integration/harness"
	"github.com/cyclerhq/cycler/pkgfile"
	"github.com/cyclerhq/cycler/pkgfile/pkgtest"
	"github.com/cyclerhq/cycler/pkgstore"
)

// testPackage builds a package of web at version with some incompressible
// content, so blobs are big enough to stream in many reads.
func testPackage(t *testing.T, version string) []byte {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(len(version)), uint64(version[len(version)-1])))
	body := make([]byte, 256<<10)
	for i := range body {
		body[i] = byte(rng.Uint32())
	}
	return pkgtest.Package(t, pkgtest.Manifest(pkgfile.Manifest{Name: "web", Version: version}),
		pkgtest.Entry{Name: "bin/web", Body: body, Mode: 0o755})
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return pkgstore.DigestPrefix + hex.EncodeToString(s[:])
}

// blobDir is where n keeps package files: the default <data_dir>/packages.
func (n *clusterNode) blobDir() string {
	return filepath.Join(n.Dir, "data", "packages", "sha256")
}

// blobFiles lists every file in n's blob directory, temporary files included.
func (n *clusterNode) blobFiles(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir(n.blobDir())
	if err != nil {
		harness.Fatalf(t, "%s: %v", n.ID, err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	slices.Sort(out)
	return out
}

// hexes returns the hex parts of digests, sorted, as blob file names.
func hexes(digests ...string) []string {
	var out []string
	for _, d := range digests {
		out = append(out, strings.TrimPrefix(d, pkgstore.DigestPrefix))
	}
	slices.Sort(out)
	return out
}

// listPackages runs `cyclerctl package list --json` against n.
func (c *cluster) listPackages(ctx context.Context, n *clusterNode) []controller.Package {
	c.t.Helper()
	out := c.mustCtl(ctx, n.APIAddr, "package", "list", "--json")
	var list []controller.Package
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		harness.Fatalf(c.t, "package list --json on %s: %v\n%s", n.ID, err, out)
	}
	return list
}

// packageDigests are the digests of a package list, in its order.
func packageDigests(list []controller.Package) []string {
	var out []string
	for _, p := range list {
		out = append(out, p.Digest)
	}
	return out
}

// waitPackages waits until every node lists exactly want, in upload order,
// and holds exactly their blobs on disk.
func (c *cluster) waitPackages(ctx context.Context, want ...string) {
	c.t.Helper()
	waitFor(c.t, fmt.Sprintf("every server to list and store exactly %d packages", len(want)), func() error {
		for _, n := range c.nodes {
			if got := packageDigests(c.listPackages(ctx, n)); !slices.Equal(got, want) {
				return fmt.Errorf("%s lists %v", n.ID, got)
			}
			if got := n.blobFiles(c.t); !slices.Equal(got, hexes(want...)) {
				return fmt.Errorf("%s stores %v", n.ID, got)
			}
		}
		return nil
	})
}

// download fetches a blob from n's operator download route and checks the
// bytes and headers against want.
func download(ctx context.Context, n *clusterNode, digest string, want []byte) error {
	resp, err := n.API.DoRaw(ctx, http.MethodGet, "/v1/packages/"+digest+"/download", nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if sha(got) != digest || len(got) != len(want) {
		return fmt.Errorf("%s served %d bytes hashing to %s; want %d bytes, %s", n.ID, len(got), sha(got), len(want), digest)
	}
	if h := resp.Header.Get(controller.HeaderDigest); h != digest {
		return fmt.Errorf("%s sent %s %q", n.ID, controller.HeaderDigest, h)
	}
	if resp.ContentLength != int64(len(want)) {
		return fmt.Errorf("%s sent Content-Length %d, want %d", n.ID, resp.ContentLength, len(want))
	}
	return nil
}

// upload posts data to n's package route directly, as a client that skips
// cyclerctl's local check would.
func upload(ctx context.Context, n *clusterNode, data []byte) error {
	resp, err := n.API.DoUpload(ctx, http.MethodPost, "/v1/packages", bytes.NewReader(data), int64(len(data)), "application/octet-stream")
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// truncatedUpload announces a Content-Length of len(data)+missing, sends
// data, half-closes the connection and returns the status and body.
func truncatedUpload(ctx context.Context, addr string, data []byte, missing int) (int, string, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, "", err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	fmt.Fprintf(conn, "POST /v1/packages HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", addr, clusterToken, len(data)+missing)
	if _, err := conn.Write(data); err != nil {
		return 0, "", err
	}
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		return 0, "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

func TestPackages(t *testing.T) {
	c := startCluster(t, clusterOptions{Size: 3, Timing: "fast"})
	ctx := testContext(t, 4*time.Minute)
	leader := c.waitLeader(ctx, c.nodes...)
	follower := c.others(leader)[0]
	dir := t.TempDir()
	file := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			harness.Fatal(t, err)
		}
		return p
	}

	// Push through a follower (forwarded to the leader, body relayed) and
	// through the leader, with the real cyclerctl.
	v1, v2 := testPackage(t, "1.0.0"), testPackage(t, "2.0.0")
	d1, d2 := sha(v1), sha(v2)
	if out := c.mustCtl(ctx, follower.APIAddr, "package", "push", file("v1.tar.gz", v1)); !strings.Contains(out, "pushed web 1.0.0 "+d1) {
		harness.Fatalf(t, "push through %s: %q", follower.ID, out)
	}
	if out := c.mustCtl(ctx, leader.APIAddr, "package", "push", file("v2.tar.gz", v2)); !strings.Contains(out, "pushed web 2.0.0 "+d2) {
		harness.Fatalf(t, "push through %s: %q", leader.ID, out)
	}
	if out := c.mustCtl(ctx, follower.APIAddr, "package", "push", file("v1.tar.gz", v1)); !strings.Contains(out, "already present: web 1.0.0 "+d1) {
		harness.Errorf(t, "second push of the same bytes: %q", out)
	}

	// Every server lists both and holds both blobs: the followers fetched
	// them from a peer. Each serves them with the right digest.
	c.waitPackages(ctx, d1, d2)
	for _, n := range c.nodes {
		for _, p := range c.listPackages(ctx, n) {
			if p.Name != "web" || p.Uploader != "ops" || p.UploadedAt.IsZero() || !p.Stored {
				harness.Errorf(t, "%s lists %+v", n.ID, p)
			}
		}
		if err := download(ctx, n, d1, v1); err != nil {
			t.Error(err)
		}
		if err := download(ctx, n, d2, v2); err != nil {
			t.Error(err)
		}
		table := c.mustCtl(ctx, n.APIAddr, "package", "list")
		if !strings.Contains(table, pkgstore.ShortDigest(d1)) || !strings.Contains(table, "UPLOADER") {
			harness.Errorf(t, "%s: package list:\n%s", n.ID, table)
		}
	}
	// The blob route is for agents: an operator token may not use it.
	if _, err := follower.API.DoRaw(ctx, http.MethodGet, "/v1/packages/"+d1+"/blob", nil, ""); !errors.Is(err, api.ErrForbidden) {
		harness.Errorf(t, "blob route with an operator token: err = %v, want forbidden", err)
	}

	// Hostile packages are refused, through either server, with an error
	// naming the entry, and nothing is stored or committed.
	{
		for _, hc := range pkgtest.HostileCases(t) {
			if hc.SizeLimited {
				continue // within the server's default limits
			}
			for _, n := range []*clusterNode{leader, follower} {
				err := upload(ctx, n, hc.Archive)
				var ae *api.Error
				if !errors.As(err, &ae) || ae.Code != api.CodeBadRequest || !strings.Contains(ae.Message, "nothing was stored") ||
					(hc.Entry != "" && !strings.Contains(ae.Message, fmt.Sprintf("%q", hc.Entry))) {
					harness.Errorf(t, "%s through %s: err = %v; want bad_request naming entry %q", hc.Name, n.ID, err, hc.Entry)
				}
			}
		}
		// cyclerctl refuses before uploading, naming the entry.
		evil := file("evil.tar.gz", pkgtest.Hostile(t)["symlink-escape"])
		_, errOut, err := c.ctl(ctx, follower.APIAddr, "package", "push", evil)
		if err == nil || !strings.Contains(errOut, `package entry "sub/escape"`) {
			harness.Errorf(t, "cyclerctl push of a hostile package: err %v, stderr %q", err, errOut)
		}
		c.waitPackages(ctx, d1, d2)
	}

	// A truncated upload (the body ends before its Content-Length) is
	// refused, through either server, and nothing is kept.
	{
		v3 := testPackage(t, "3.0.0")
		for _, n := range []*clusterNode{leader, follower} {
			status, body, err := truncatedUpload(ctx, n.APIAddr, v3, 1000)
			want := fmt.Sprintf("truncated upload: got %d of %d bytes", len(v3), len(v3)+1000)
			if err != nil || status != http.StatusBadRequest || !strings.Contains(body, want) {
				harness.Errorf(t, "through %s: status %d, body %q, err %v; want 400 with %q", n.ID, status, body, err, want)
			}
		}
		c.waitPackages(ctx, d1, d2)
	}

	// GC keeps the newest 5 of web (the default packages.keep) and every
	// server removes the other blobs. The live and standby packages'
	// protection is tested in pkgstore against a real replicated state,
	// since no API sets a service's pools yet.
	{
		all := []string{d1, d2}
		for i := range 6 {
			data := testPackage(t, fmt.Sprintf("3.%d.0", i))
			c.mustCtl(ctx, c.nodes[i%len(c.nodes)].APIAddr, "package", "push", file(fmt.Sprintf("v3.%d.tar.gz", i), data))
			all = append(all, sha(data))
		}
		out := c.mustCtl(ctx, follower.APIAddr, "package", "gc")
		// GC also runs after every upload, so this run may find the work
		// done; whatever it removed must be among the oldest three.
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			switch {
			case strings.HasPrefix(line, "removed nothing"):
			case strings.HasPrefix(line, "removed "):
				if !slices.ContainsFunc(all[:3], func(d string) bool { return strings.Contains(line, pkgstore.ShortDigest(d)) }) {
					harness.Errorf(t, "gc removed a package that is not among the oldest three: %q", line)
				}
			case strings.HasPrefix(line, "kept "):
				if !strings.Contains(line, "one of the newest 5 of web") {
					harness.Errorf(t, "gc kept line %q lacks its reason", line)
				}
			default:
				harness.Errorf(t, "unexpected gc output line %q", line)
			}
		}
		if n := strings.Count(out, "kept "); n != 5 {
			harness.Errorf(t, "gc kept %d packages, want 5:\n%s", n, out)
		}
		c.waitPackages(ctx, all[3:]...)
	}
}
