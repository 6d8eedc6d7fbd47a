package proxy

import (
	"context"
	"crypto/tls"
	"time"
)

// tlsHandshakeTimeout bounds a TLS client's handshake: a client that opens
// a connection and never completes it does not hold a session for longer.
const tlsHandshakeTimeout = 10 * time.Second

// handshake completes the TLS handshake of a client served through a TLS
// listener (tls.NewListener), before anything is read, within
// tlsHandshakeTimeout. It reports false when the client must be dropped
// (no valid certificate, wrong protocol version, timeout). Plain
// connections pass.
func (s *session) handshake() bool {
	tc, ok := s.conn.(*tls.Conn)
	if !ok {
		return true
	}
	ctx, cancel := context.WithTimeout(s.ctx, tlsHandshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		s.srv.log.Debug("client TLS handshake failed", "client", s.id, "addr", s.conn.RemoteAddr().String(), "err", err)
		return false
	}
	return true
}
