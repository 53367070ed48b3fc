package licenseserver

// PausePools stops (true) or resumes (false) the refilling of s's challenge
// pools, so that a test can empty one.
func PausePools(s *Server, paused bool) {
	ps := s.pool.Load()
	ps.paused.Store(paused)
	if !paused {
		ps.signal()
	}
}
