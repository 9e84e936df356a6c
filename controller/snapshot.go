package controller

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/cyclerhq/cycler/api"
	"github.com/cyclerhq/cycler/raftstore"
)

// handleSnapshotSave streams an operator snapshot of this server's state.
func (c *Controller) handleSnapshotSave(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition",
		fmt.Sprintf(`attachment; filename="cycler-%s-%s.snap"`, c.store.ID(), time.Now().UTC().Format("20060102T150405Z")))
	_, err := c.store.SaveSnapshot(r.Context(), w)
	return err
}

// handleSnapshotRestore installs an uploaded snapshot cluster-wide. The
// store verifies the whole file (magic, version, checksum, decodable state)
// before it changes anything, so a bad upload leaves the state as it was.
func (c *Controller) handleSnapshotRestore(w http.ResponseWriter, r *http.Request) error {
	if ct := r.Header.Get("Content-Type"); ct != "application/octet-stream" {
		return api.UnsupportedMediaType("a snapshot upload must be sent as application/octet-stream, not %q", ct)
	}
	// The upload is bounded by maxSnapshotUpload and the state must fit in
	// one Raft entry anyway, so holding it in memory is fine; it lets the
	// meta be reported for the file that was actually installed.
	data, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return api.TooLarge("the snapshot upload is over %d bytes, larger than any valid snapshot", mbe.Limit)
		}
		return api.BadRequest("reading the snapshot upload: %v", err)
	}
	meta, err := raftstore.VerifySnapshot(bytes.NewReader(data))
	if err != nil {
		return err
	}
	if err := c.store.RestoreSnapshot(r.Context(), bytes.NewReader(data)); err != nil {
		return err
	}
	c.log.Info("snapshot restored", zap.Uint64("snapshot_index", meta.Index), zap.String("sha256", meta.SHA256))
	c.audit(r, "snapshot.restore", meta.NodeID, fmt.Sprintf("index %d, sha256 %s", meta.Index, meta.SHA256))
	return api.WriteJSON(w, http.StatusOK, api.SnapshotRestored{
		Index: meta.Index, Term: meta.Term, NodeID: meta.NodeID, CreatedAt: meta.CreatedAt, SHA256: meta.SHA256,
	})
}
