package pkgstore

// Holds and the seen set decide when Sync may remove a blob the replicated
// state does not list. Two cases must not lose a blob: an upload stored but
// not yet committed (held, see Put), and a commit whose outcome is unknown
// (not seen, so kept for the orphan grace). A blob whose digest this process
// saw listed, and then no longer, was deleted by the state and goes at once.

// hold records that a Put stored digest and its metadata is being committed.
func (s *Store) hold(digest string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.holds[digest]++
}

// Release ends the hold a successful Put took on digest. committed says
// whether the caller committed the package's metadata: a committed blob the
// state later drops is removed by the next Sync pass, while one whose
// commit failed, or whose outcome is unknown, is kept for the orphan grace
// in case the commit did go through.
func (s *Store) Release(digest string, committed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if committed {
		s.seen[digest] = true
	}
	if s.holds[digest] <= 1 {
		delete(s.holds, digest)
		return
	}
	s.holds[digest]--
}

// markSeen records digests the state lists.
func (s *Store) markSeen(digests map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for d := range digests {
		s.seen[d] = true
	}
}

// wasSeen reports whether the state listed digest at some point.
func (s *Store) wasSeen(digest string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[digest]
}

// forgetUnlisted drops from the seen set the digests that are neither
// listed nor stored, so it stays as small as the store.
func (s *Store) forgetUnlisted(listed map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for d := range s.seen {
		if !listed[d] && s.holds[d] == 0 && !s.Has(d) {
			delete(s.seen, d)
		}
	}
}

// deleteUnheld removes the blob of digest unless a Put holds it, and reports
// whether it did. The check and the removal happen under mu, and Put takes
// its hold before it renames, so a sweep never removes a blob a Put has just
// renamed into place.
func (s *Store) deleteUnheld(digest string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.holds[digest] > 0 {
		return false, nil
	}
	return true, s.Delete(digest)
}
