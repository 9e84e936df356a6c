package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/cyclerhq/cycler/api"
	"github.com/cyclerhq/cycler/raftstore"
)

func newSnapshotCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "snapshot", Short: "Back up and restore the controller state"}
	cmd.AddCommand(
		&cobra.Command{
			Use:   "save FILE",
			Short: "Write a verified snapshot of the cluster state to FILE",
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return g.snapshotSave(cmd, args[0])
			},
		},
		&cobra.Command{
			Use:   "restore FILE",
			Short: "Replace the cluster state with the snapshot in FILE",
			Long: `Restore replaces the whole controller state on every server. The file is
verified here first (format, version, checksum, decodable state) and again by
the leader; a corrupt or truncated file is refused and nothing changes.`,
			Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return g.snapshotRestore(cmd, args[0])
			},
		},
	)
	return cmd
}

// snapshotSave downloads into a temporary file beside FILE, verifies it and
// only then renames it into place, so FILE is never a partial snapshot.
func (g *globals) snapshotSave(cmd *cobra.Command, path string) error {
	c, err := g.client()
	if err != nil {
		return err
	}
	resp, err := c.DoRaw(cmd.Context(), http.MethodGet, "/v1/snapshot?consistent", nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("snapshot save: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename this finds nothing
	if _, err := io.Copy(tmp, resp.Body); err != nil {
		tmp.Close()
		return fmt.Errorf("snapshot save: download interrupted: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("snapshot save: %w", err)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		tmp.Close()
		return fmt.Errorf("snapshot save: %w", err)
	}
	meta, err := raftstore.VerifySnapshot(tmp)
	tmp.Close()
	if err != nil {
		return fmt.Errorf("snapshot save: the downloaded snapshot does not verify, so %s was not written: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("snapshot save: %w", err)
	}
	if g.json {
		return g.printJSON(meta)
	}
	fmt.Fprintf(g.stdout, "saved %s: raft index %d, term %d, from %s, sha256 %s\n", path, meta.Index, meta.Term, meta.NodeID, meta.SHA256)
	return nil
}

func (g *globals) snapshotRestore(cmd *cobra.Command, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("snapshot restore: %w", err)
	}
	defer f.Close()
	if _, err := raftstore.VerifySnapshot(f); err != nil {
		return fmt.Errorf("snapshot restore: %s: %w; nothing was changed", path, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("snapshot restore: %w", err)
	}
	c, err := g.client()
	if err != nil {
		return err
	}
	resp, err := c.DoRaw(cmd.Context(), http.MethodPost, "/v1/snapshot", f, "application/octet-stream")
	if err != nil {
		return fmt.Errorf("snapshot restore: %w", err)
	}
	defer resp.Body.Close()
	var out api.SnapshotRestored
	if err := decodeBody(resp.Body, &out); err != nil {
		return fmt.Errorf("snapshot restore: %w", err)
	}
	if g.json {
		return g.printJSON(out)
	}
	fmt.Fprintf(g.stdout, "restored %s (snapshot of %s at raft index %d, sha256 %s)\n", path, out.NodeID, out.Index, out.SHA256)
	return nil
}
