package protocol

import (
	"io"
	"time"
)

// Recheck and Refresh keep server/ building until it moves to ServerConn.
// They are removed with that move.

// Deprecated: use ServerConn.Recheck.
func (s *Server) Recheck(sess *Session, now time.Time) error {
	_, err := s.recheck(sess, now)
	return err
}

// Deprecated: ServerConn sends re-challenges.
func (s *Server) Refresh(sess *Session, rand io.Reader, now time.Time, exporter []byte) (*ServerHandshake, []byte, error) {
	return s.refresh(sess, rand, now, exporter)
}
