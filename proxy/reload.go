package proxy

import "time"

// Settings are the Server settings that may change while it runs (the
// binary applies them on SIGHUP). Zero fields mean the same defaults as in
// Config.
type Settings struct {
	// MaxClients bounds concurrent client connections; lowering it closes
	// nobody, it only refuses new clients beyond it. Default 10000.
	MaxClients int
	// IdleTimeout closes clients idle that long; it applies to each client
	// from its next command on. 0 = never.
	IdleTimeout time.Duration
	// ClientWriteTimeout disconnects a client that accepts no reply bytes
	// for that long (see Config). It applies to every client from its next
	// write on. 0 = never.
	ClientWriteTimeout time.Duration
	// SlowlogThreshold logs commands whose time from being read to their
	// reply being written is at least this long in the proxy's SLOWLOG.
	// 0 means the default 10ms, negative turns the slow log off; 1ns logs
	// every command.
	SlowlogThreshold time.Duration
	// SlowlogMaxLen is the number of entries the slow log keeps (the oldest
	// are dropped). Default 128.
	SlowlogMaxLen int
}

// Reload applies st to the running server.
func (s *Server) Reload(st Settings) {
	if st.MaxClients <= 0 {
		st.MaxClients = 10000
	}
	s.maxClients.Store(int64(st.MaxClients))
	s.idleTimeout.Store(int64(max(st.IdleTimeout, 0)))
	s.writeTimeout.Store(int64(max(st.ClientWriteTimeout, 0)))
	s.slow.set(st.SlowlogThreshold, st.SlowlogMaxLen)
}

// Settings returns the settings in force (defaults filled in).
func (s *Server) Settings() Settings {
	th := time.Duration(s.slow.threshold.Load())
	return Settings{
		MaxClients:         int(s.maxClients.Load()),
		IdleTimeout:        time.Duration(s.idleTimeout.Load()),
		ClientWriteTimeout: time.Duration(s.writeTimeout.Load()),
		SlowlogThreshold:   th,
		SlowlogMaxLen:      int(s.slow.maxLen.Load()),
	}
}
