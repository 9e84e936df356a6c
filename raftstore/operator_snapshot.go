package raftstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"go.uber.org/zap"
)

// Operator snapshots are the files of `cyclerctl snapshot save|restore`.
// Layout, integers big-endian:
//
//	magic         8 bytes   "CYCLRSNP"
//	version       uint16    SnapshotFormatVersion
//	meta length   uint32    1..maxSnapshotMetaSize
//	meta          JSON      {"index","term","node_id","created_at"}
//	state length  uint64    1..MaxSnapshotStateSize
//	state         JSON      the State, encoded as in Raft snapshots
//	checksum      32 bytes  SHA-256 of every byte above
//
// The lengths let a reader reject a truncated file before decoding, and the
// trailing checksum catches any flipped bit in between.

const (
	// SnapshotFormatVersion is the operator snapshot format this build
	// writes and the only one it reads.
	SnapshotFormatVersion = 1
	// MaxSnapshotStateSize caps the state section. The state is tiny next to
	// this (services, 10k audit entries, breakers); the cap stops a hostile
	// length from making the reader buffer without bound, and bounds the
	// Raft entry a restore commits.
	MaxSnapshotStateSize = 64 << 20

	snapshotMagic       = "CYCLRSNP"
	maxSnapshotMetaSize = 64 << 10
)

// ErrInvalidSnapshot is wrapped by every error about a snapshot file's
// content: empty, truncated, wrong magic or version, bad checksum,
// undecodable meta or state. Nothing is changed when it is returned.
var ErrInvalidSnapshot = errors.New("invalid snapshot file")

// SnapshotMeta describes an operator snapshot.
type SnapshotMeta struct {
	FormatVersion uint16 `json:"format_version"`
	// Index and Term are the last Raft entry applied to the saved state.
	Index uint64 `json:"index"`
	Term  uint64 `json:"term"`
	// NodeID is the server that saved the snapshot.
	NodeID    string    `json:"node_id"`
	CreatedAt time.Time `json:"created_at"`
	// StateSize is the length of the state section in bytes.
	StateSize int64 `json:"state_size"`
	// SHA256 is the file's checksum trailer, hex-encoded.
	SHA256 string `json:"sha256"`
}

type snapshotFileMeta struct {
	Index     uint64    `json:"index"`
	Term      uint64    `json:"term"`
	NodeID    string    `json:"node_id"`
	CreatedAt time.Time `json:"created_at"`
}

// SaveSnapshot writes this node's current state to w as an operator
// snapshot. It works on any node; the state is a consistent copy as of
// meta.Index (call Barrier on the leader first for the latest committed state).
func (s *Store) SaveSnapshot(ctx context.Context, w io.Writer) (SnapshotMeta, error) {
	st, index, term := s.fsm.copyState()
	state, err := encodeState(st)
	if err != nil {
		return SnapshotMeta{}, fmt.Errorf("raftstore: save snapshot: encode state: %w", err)
	}
	fm := snapshotFileMeta{Index: index, Term: term, NodeID: s.cfg.NodeID, CreatedAt: s.now()}
	meta, err := writeSnapshot(ctxWriter{ctx: ctx, w: w}, fm, state)
	if err != nil {
		return SnapshotMeta{}, fmt.Errorf("raftstore: save snapshot: %w", err)
	}
	s.log.Info("snapshot saved", zap.Uint64("index", index), zap.Int64("state_size", meta.StateSize))
	return meta, nil
}

// RestoreSnapshot replaces the whole cluster's state with an operator
// snapshot. It reads and verifies all of r (magic, version, lengths,
// checksum, decodable state) before changing anything; a bad file returns an
// error wrapping ErrInvalidSnapshot. It runs on the leader only.
//
// The verified state is committed as a RestoreState command rather than
// through raft.Restore. raft.Restore installs the state on the leader alone,
// ahead of any quorum, and pushes it to followers by InstallSnapshot; its
// documentation limits it to disaster recovery into a fresh cluster. As a
// command the restore commits only with a quorum, lands at one log position on
// every replica, is ordered with every other write, and survives restarts
// like any entry (then any Raft snapshot). The cost is one log entry the size
// of the state, which MaxSnapshotStateSize bounds.
func (s *Store) RestoreSnapshot(ctx context.Context, r io.Reader) error {
	meta, state, err := readSnapshot(r)
	if err != nil {
		return fmt.Errorf("raftstore: restore snapshot: %w", err)
	}
	if !s.IsLeader() {
		return fmt.Errorf("raftstore: restore snapshot: %w%s", ErrNotLeader, s.leaderHint())
	}
	data := make([]byte, 0, 1+len(state))
	data = append(append(data, byte(RestoreStateCommand)), state...)
	if _, err := s.applyBytes(ctx, "restore snapshot", data); err != nil {
		return err
	}
	s.log.Info("snapshot restored", zap.Uint64("snapshot_index", meta.Index),
		zap.String("snapshot_node_id", meta.NodeID), zap.Time("snapshot_created_at", meta.CreatedAt))
	// The snapshot may come from another cluster or an older membership:
	// put this leader's own API address back at once. Other servers'
	// NodeMeta is whatever the snapshot held until they rejoin or lead.
	if s.cfg.APIAddr != "" {
		s.publishNodeMeta(ctx)
	}
	return nil
}

// VerifySnapshot reads all of r and checks it is a valid operator snapshot,
// without touching any store. The CLI uses it to check a file before upload.
func VerifySnapshot(r io.Reader) (SnapshotMeta, error) {
	meta, _, err := readSnapshot(r)
	return meta, err
}

func writeSnapshot(w io.Writer, fm snapshotFileMeta, state []byte) (SnapshotMeta, error) {
	metaJSON, err := json.Marshal(fm)
	if err != nil {
		return SnapshotMeta{}, fmt.Errorf("encode meta: %w", err)
	}
	if len(state) > MaxSnapshotStateSize {
		return SnapshotMeta{}, fmt.Errorf("state is %d bytes, over the %d byte limit", len(state), MaxSnapshotStateSize)
	}
	h := sha256.New()
	mw := io.MultiWriter(w, h)
	var hdr []byte
	hdr = append(hdr, snapshotMagic...)
	hdr = binary.BigEndian.AppendUint16(hdr, SnapshotFormatVersion)
	hdr = binary.BigEndian.AppendUint32(hdr, uint32(len(metaJSON)))
	hdr = append(hdr, metaJSON...)
	hdr = binary.BigEndian.AppendUint64(hdr, uint64(len(state)))
	if _, err := mw.Write(hdr); err != nil {
		return SnapshotMeta{}, fmt.Errorf("write: %w", err)
	}
	if _, err := mw.Write(state); err != nil {
		return SnapshotMeta{}, fmt.Errorf("write: %w", err)
	}
	sum := h.Sum(nil)
	if _, err := w.Write(sum); err != nil {
		return SnapshotMeta{}, fmt.Errorf("write: %w", err)
	}
	return fileMeta(fm, int64(len(state)), sum), nil
}

func fileMeta(fm snapshotFileMeta, size int64, sum []byte) SnapshotMeta {
	return SnapshotMeta{
		FormatVersion: SnapshotFormatVersion,
		Index:         fm.Index,
		Term:          fm.Term,
		NodeID:        fm.NodeID,
		CreatedAt:     fm.CreatedAt,
		StateSize:     size,
		SHA256:        hex.EncodeToString(sum),
	}
}

// readSnapshot reads and verifies a whole operator snapshot and returns its
// meta and state bytes, which are known to decode.
func readSnapshot(r io.Reader) (SnapshotMeta, []byte, error) {
	h := sha256.New()
	tr := io.TeeReader(r, h)

	var magic [len(snapshotMagic)]byte
	n, err := io.ReadFull(tr, magic[:])
	switch {
	case n == 0 && errors.Is(err, io.EOF):
		return bad("the file is empty")
	case err != nil:
		return SnapshotMeta{}, nil, readErr(err, "magic header", int64(n), len(magic))
	case string(magic[:]) != snapshotMagic:
		return bad("bad magic %q: not a cycler snapshot (want %q)", magic[:], snapshotMagic)
	}
	var fixed [2 + 4]byte
	if err := readFull(tr, fixed[:], "format version and meta length"); err != nil {
		return SnapshotMeta{}, nil, err
	}
	if v := binary.BigEndian.Uint16(fixed[:2]); v != SnapshotFormatVersion {
		return bad("unsupported format version %d (this build reads version %d)", v, SnapshotFormatVersion)
	}
	metaLen := binary.BigEndian.Uint32(fixed[2:])
	if metaLen == 0 || metaLen > maxSnapshotMetaSize {
		return bad("meta length %d is outside 1..%d", metaLen, maxSnapshotMetaSize)
	}
	metaJSON, err := readSection(tr, int64(metaLen), "meta")
	if err != nil {
		return SnapshotMeta{}, nil, err
	}
	var lenBuf [8]byte
	if err := readFull(tr, lenBuf[:], "state length"); err != nil {
		return SnapshotMeta{}, nil, err
	}
	stateLen := binary.BigEndian.Uint64(lenBuf[:])
	if stateLen == 0 || stateLen > MaxSnapshotStateSize {
		return bad("state length %d is outside 1..%d", stateLen, MaxSnapshotStateSize)
	}
	state, err := readSection(tr, int64(stateLen), "state")
	if err != nil {
		return SnapshotMeta{}, nil, err
	}
	want := h.Sum(nil)
	got := make([]byte, sha256.Size)
	if err := readFull(r, got, "checksum"); err != nil {
		return SnapshotMeta{}, nil, err
	}
	if !bytes.Equal(got, want) {
		return bad("checksum mismatch: the file is corrupt (trailer %x, content hashes to %x)", got, want)
	}
	if n, _ := r.Read(make([]byte, 1)); n > 0 {
		return bad("unexpected data after the checksum")
	}
	var fm snapshotFileMeta
	if err := json.Unmarshal(metaJSON, &fm); err != nil {
		return bad("meta: decode: %v", err)
	}
	if _, err := decodeState(state); err != nil {
		return bad("state: %v", err)
	}
	return fileMeta(fm, int64(stateLen), want), state, nil
}

func bad(format string, args ...any) (SnapshotMeta, []byte, error) {
	return SnapshotMeta{}, nil, fmt.Errorf("%w: "+format, append([]any{ErrInvalidSnapshot}, args...)...)
}

func readFull(r io.Reader, buf []byte, what string) error {
	if n, err := io.ReadFull(r, buf); err != nil {
		return readErr(err, what, int64(n), len(buf))
	}
	return nil
}

// readErr tells a file that ends early (invalid) from a reader that failed.
func readErr[N int | int64](err error, what string, got int64, want N) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		_, _, err = bad("truncated in the %s (%d of %d bytes)", what, got, want)
		return err
	}
	return fmt.Errorf("read %s: %w", what, err)
}

// readSection reads exactly n bytes, growing the buffer as data arrives so a
// large declared length costs nothing until the bytes actually exist.
func readSection(r io.Reader, n int64, what string) ([]byte, error) {
	var buf bytes.Buffer
	got, err := io.CopyN(&buf, r, n)
	if err != nil {
		return nil, readErr(err, what, got, n)
	}
	return buf.Bytes(), nil
}

// ctxWriter stops a long write once ctx is done.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}
