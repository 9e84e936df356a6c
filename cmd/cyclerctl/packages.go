package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/cyclerhq/cycler/controller"
	"github.com/cyclerhq/cycler/pkgfile"
	"github.com/cyclerhq/cycler/pkgstore"
)

func newPackageCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "package", Short: "Push, list and garbage-collect packages"}
	cmd.AddCommand(
		&cobra.Command{
			Use:   "push FILE.tar.gz",
			Short: "Upload a package to the cluster",
			Long: `Push checks FILE here first (manifest, entry paths, links, sizes), then
streams it to the cluster, which checks it again, stores it by its sha256 on
every server and records its name, version and digest. Pushing the same file
again changes nothing.`,
			Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return g.packagePush(cmd, args[0])
			},
		},
		&cobra.Command{
			Use:   "list",
			Short: "List the packages, oldest upload first",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				var list []controller.Package
				if err := g.call(cmd, http.MethodGet, "/v1/packages", nil, &list); err != nil {
					return err
				}
				if g.json {
					return g.printJSON(list)
				}
				if len(list) == 0 {
					fmt.Fprintln(g.stdout, "no packages; push one with `cyclerctl package push FILE.tar.gz`")
					return nil
				}
				tw := g.table()
				fmt.Fprintln(tw, "NAME\tVERSION\tDIGEST\tSIZE\tUPLOADER\tUPLOADED")
				for _, p := range list {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.Version, pkgstore.ShortDigest(p.Digest),
						humanBytes(p.Size), orDash(p.Uploader), p.UploadedAt.UTC().Format(time.RFC3339))
				}
				return tw.Flush()
			},
		},
		&cobra.Command{
			Use:   "gc",
			Short: "Remove old packages now, keeping the newest per name and every package a service uses",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				var res pkgstore.GCResult
				if err := g.call(cmd, http.MethodPost, "/v1/packages/gc", nil, &res); err != nil {
					return err
				}
				if g.json {
					return g.printJSON(res)
				}
				if len(res.Removed) == 0 {
					fmt.Fprintln(g.stdout, "removed nothing")
				}
				for _, e := range res.Removed {
					fmt.Fprintf(g.stdout, "removed %s %s %s: %s\n", e.Name, e.Version, pkgstore.ShortDigest(e.Digest), e.Reason)
				}
				for _, e := range res.Kept {
					fmt.Fprintf(g.stdout, "kept    %s %s %s: %s\n", e.Name, e.Version, pkgstore.ShortDigest(e.Digest), e.Reason)
				}
				return nil
			},
		},
	)
	return cmd
}

// packagePush is `package push`: pushPackage, then the answer as JSON or
// one line.
func (g *globals) packagePush(cmd *cobra.Command, path string) error {
	out, m, err := g.pushPackage(cmd, path)
	if err != nil {
		return err
	}
	if g.json {
		return g.printJSON(out)
	}
	g.describePush(g.stdout, out, m)
	return nil
}

// describePush writes the human answer to a push: what the server stored,
// and a note when it records the bytes under another name or version.
func (g *globals) describePush(w io.Writer, out controller.PackagePushed, m pkgfile.Manifest) {
	verb := "pushed"
	if out.Existed {
		verb = "already present:"
	}
	fmt.Fprintf(w, "%s %s %s %s (%s)", verb, out.Name, out.Version, out.Digest, humanBytes(out.Size))
	if out.Servers > 0 {
		fmt.Fprintf(w, ", stored on %d of %d servers", out.Stored, out.Servers)
	}
	fmt.Fprintln(w)
	if out.Warning != "" {
		fmt.Fprintf(g.stderr, "warning: %s\n", out.Warning)
	}
	if out.Name != m.Name || out.Version != m.Version {
		// The same bytes were pushed before; the server's record wins.
		fmt.Fprintf(g.stderr, "note: the server records these bytes as %s %s\n", out.Name, out.Version)
	}
}

// pushPackage checks the file locally, then streams it with its exact
// Content-Length, and returns the server's answer and the file's manifest.
// Like call, it retries while the cluster has no leader (a push is
// idempotent: the same bytes make the same package), rewinding the file for
// each attempt. `package push` and `deploy FILE` share it.
func (g *globals) pushPackage(cmd *cobra.Command, path string) (controller.PackagePushed, pkgfile.Manifest, error) {
	var out controller.PackagePushed
	f, err := os.Open(path)
	if err != nil {
		return out, pkgfile.Manifest{}, fmt.Errorf("package push: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return out, pkgfile.Manifest{}, fmt.Errorf("package push: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return out, pkgfile.Manifest{}, fmt.Errorf("package push: %s is not a regular file", path)
	}
	m, err := pkgfile.ReadManifest(f, pkgfile.DefaultLimits())
	if err != nil {
		return out, m, fmt.Errorf("%s: %w; nothing was uploaded", path, err)
	}
	c, err := g.client()
	if err != nil {
		return out, m, err
	}
	ctx := cmd.Context()
	deadline := time.Now().Add(retryFor)
	wait := 200 * time.Millisecond
	for {
		// A fresh reader per attempt: the HTTP client closes a request
		// body that is an io.Closer, which would leave nothing to retry
		// with; a SectionReader is not one and starts at 0 each time.
		body := io.NewSectionReader(f, 0, fi.Size())
		resp, err := c.DoUpload(ctx, http.MethodPost, "/v1/packages", body, fi.Size(), "application/octet-stream")
		if err == nil {
			err = decodeBody(resp.Body, &out)
			resp.Body.Close()
			if err != nil {
				return out, m, fmt.Errorf("package push: %w", err)
			}
			return out, m, nil
		}
		if !retryable(err) || time.Now().Add(wait).After(deadline) {
			return out, m, fmt.Errorf("package push: %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			return out, m, fmt.Errorf("package push: %w", errors.Join(err, ctx.Err()))
		case <-time.After(wait):
		}
		wait = min(wait*2, 2*time.Second)
	}
}

// humanBytes formats a size for tables: "512 B", "1.5 KiB", "20.0 MiB".
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
