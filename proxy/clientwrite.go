package proxy

import (
	"crypto/tls"
	"net"
	"time"
)

// tlsWriteChunk bounds one write to a TLS client under a write deadline: a
// TLS connection is unusable after a write times out, so each chunk must go
// through within ClientWriteTimeout on its own.
const tlsWriteChunk = 64 << 10

// clientWriter is what a session's buffered writer writes to: the client
// connection, with Server.writeTimeout applied to every write. A write that
// makes no progress for that long (at least 3/4 of it, see arm) fails with
// a timeout, and the session then drops the client as it drops a broken one
// (writeLoop). The deadline is moved ahead before writes and cleared when
// the timeout is turned off.
//
// It is used by one goroutine at a time: the session's writer, or its
// reader while nothing is queued for the writer (see session.queued).
type clientWriter struct {
	srv      *Server
	conn     net.Conn
	id       int64
	tls      bool
	armed    bool // a write deadline is on conn
	reported bool
	// deadline is the write deadline on conn, set for period; it is moved
	// only when less than 3/4 of the period is left (see arm).
	deadline time.Time
	period   time.Duration
}

func newClientWriter(srv *Server, conn net.Conn, id int64) *clientWriter {
	_, isTLS := conn.(*tls.Conn)
	return &clientWriter{srv: srv, conn: conn, id: id, tls: isTLS}
}

func (w *clientWriter) Write(p []byte) (int, error) {
	d := time.Duration(w.srv.writeTimeout.Load())
	if d <= 0 {
		if w.armed {
			_ = w.conn.SetWriteDeadline(time.Time{}) // turned off by Reload
			w.armed = false
		}
		return w.conn.Write(p)
	}
	written := 0
	for written < len(p) {
		chunk := p[written:]
		if w.tls && len(chunk) > tlsWriteChunk {
			chunk = chunk[:tlsWriteChunk]
		}
		w.arm(d)
		n, err := w.conn.Write(chunk)
		written += n
		if err == nil {
			continue
		}
		if isTimeout(err) {
			if n > 0 && !w.tls {
				w.armed = false // the client took some bytes: give it another period
				continue
			}
			w.slow(d)
		}
		return written, err
	}
	return written, nil
}

// arm makes sure a write deadline at least 3/4 of period d away is on the
// connection. Setting a deadline costs far more than reading the clock
// (a runtime timer update), so a client that keeps reading has its deadline
// moved once per quarter period rather than at every reply; a client that
// stops reading is dropped after between 3/4 of d and d.
func (w *clientWriter) arm(d time.Duration) {
	now := time.Now()
	if w.armed && w.period == d && w.deadline.Sub(now) >= d-d/4 {
		return
	}
	w.deadline, w.period, w.armed = now.Add(d), d, true
	_ = w.conn.SetWriteDeadline(w.deadline)
}

// slow reports a client dropped for not reading its replies.
func (w *clientWriter) slow(d time.Duration) {
	if w.reported {
		return
	}
	w.reported = true
	if o, ok := w.srv.obs.(SlowClientObserver); ok {
		o.SlowClient()
	}
	w.srv.log.Warn("disconnecting a slow client: it accepted no reply bytes within the client write timeout",
		"client", w.id, "addr", w.conn.RemoteAddr().String(), "timeout", d)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
