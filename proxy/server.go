// Package proxy is the client edge of clusterproxy: it accepts RESP
// connections from plain (non-cluster) Redis clients, runs one session per
// connection, answers proxy-local commands, and hands everything else to the
// router, replying in request order.
package proxy

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/command"
	"github.com/clusterproxy/clusterproxy/internal/resp"
	"github.com/clusterproxy/clusterproxy/router"
	"go.opentelemetry.io/otel/trace"
)

// Config configures a Server. Every zero field means the documented default.
type Config struct {
	// Password, when set, is required from clients (AUTH or HELLO AUTH)
	// before any other command. It is independent of the node credentials.
	Password string
	// RestrictDefaultUser refuses the default user (the one Password
	// opens) the commands of the @dangerous and @admin categories (FLUSHALL,
	// FLUSHDB, CONFIG, KEYS, SCRIPT/FUNCTION FLUSH...), except those the proxy
	// answers itself (INFO, ROLE, CLIENT LIST) and that neither see nor act
	// on other clients or users (MONITOR, CLIENT KILL, PAUSE, UNPAUSE and
	// UNBLOCK, ACL USERS, LIST, GETUSER, DRYRUN and LOG do). Default false:
	// like Redis's default user, it may run everything.
	RestrictDefaultUser bool
	// Users are more client users, from a users file (LoadUsers); a user
	// named "default" there replaces the one built from Password. With
	// Users and no Password, the default user is off. Nil: none.
	Users *Users
	// AuthMaxFailures failed AUTH attempts from one client address within
	// AuthFailureWindow make the proxy refuse its attempts for
	// AuthBlockTime. Defaults 10, 1m, 1m; a negative AuthMaxFailures turns
	// the limit off.
	AuthMaxFailures   int
	AuthFailureWindow time.Duration
	AuthBlockTime     time.Duration
	// MaxClients bounds concurrent client connections; a client beyond it
	// gets "-ERR max number of clients reached" and is closed. Default 10000.
	MaxClients int
	// MaxPipeline bounds the commands one client may have in flight; beyond
	// it the proxy stops reading from that client until replies are written
	// (backpressure, not buffering). Default 1024.
	MaxPipeline int
	// Limits bound what a client may send (bulk size, argument count, inline
	// length). Zero fields mean the resp package defaults (512 MiB bulk,
	// 1,048,576 arguments, 64 KiB inline).
	Limits resp.Limits
	// IdleTimeout closes a client connection idle for that long. 0 = never.
	IdleTimeout time.Duration
	// ClientWriteTimeout disconnects a client that accepts no reply bytes
	// for that long while the proxy has replies to write to it (a client
	// that sends commands and never reads). The commands it has in flight
	// are still waited for, and their replies dropped. 0 = never (the
	// binary's default is 60s).
	ClientWriteTimeout time.Duration
	// AnnounceAddr is the host:port the proxy presents in CLUSTER SLOTS,
	// SHARDS and NODES. Default: the local address of each client's
	// connection, which is right unless the proxy is behind NAT.
	AnnounceAddr string
	// ServerVersion is the Redis version reported by HELLO and INFO.
	// Default "7.0.0".
	ServerVersion string
	// Logger receives the server's logs. Default slog.Default().
	Logger *slog.Logger
	// Observer receives client-side events for metrics. Default none.
	Observer Observer
	// Tracer, when set, records one span per client command (see
	// traceCall). Nil: no tracing, at no cost.
	Tracer trace.Tracer
	// SlowlogThreshold and SlowlogMaxLen configure the proxy's SLOWLOG (see
	// Settings): defaults 10ms and 128; a negative threshold turns it off.
	SlowlogThreshold time.Duration
	SlowlogMaxLen    int

	// WriteReplicas, when above 0, makes every write wait for replication
	// before it is acknowledged: after the master's reply, the proxy runs
	// WAIT WriteReplicas WriteReplicasTimeout on that master (as a client's
	// own WAIT is run, see wait.go). A write that fewer replicas
	// acknowledged in time is answered with -NOREPLICAS (it was applied on
	// the master). Redis replication stays asynchronous: this narrows the
	// window in which a failover loses an acknowledged write, it does not
	// close it. Default 0 (off); WriteReplicasTimeout defaults to 1s.
	WriteReplicas        int
	WriteReplicasTimeout time.Duration

	// TrackingMaxKeys bounds the keys the proxy remembers for clients'
	// caches (CLIENT TRACKING); beyond it a key is forgotten and its
	// readers told it changed, as Redis does at tracking-table-max-keys.
	// Default 1,000,000.
	TrackingMaxKeys int

	// GatewayTimeout bounds one gateway command (rate limit, cache,
	// context), a cache lookup that waits for another caller's fill
	// included. Default 30s.
	GatewayTimeout time.Duration
	// RateLimit, Cache and Context configure the gateway command families.
	RateLimit RateLimitConfig
	Cache     CacheConfig
	Context   ContextConfig
}

func (c Config) withDefaults() Config {
	if c.MaxClients <= 0 {
		c.MaxClients = 10000
	}
	if c.MaxPipeline <= 0 {
		c.MaxPipeline = 1024
	}
	if c.ServerVersion == "" {
		c.ServerVersion = "7.0.0"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Observer == nil {
		c.Observer = nopObserver{}
	}
	if c.TrackingMaxKeys <= 0 {
		c.TrackingMaxKeys = 1_000_000
	}
	if c.GatewayTimeout <= 0 {
		c.GatewayTimeout = 30 * time.Second
	}
	if c.WriteReplicasTimeout <= 0 {
		c.WriteReplicasTimeout = time.Second
	}
	return c
}

// Server accepts client connections and serves them through a Router.
type Server struct {
	cfg     Config
	router  *router.Router
	table   *command.Table
	log     *slog.Logger
	obs     Observer
	nodeID  string // the proxy's node id in CLUSTER replies
	started time.Time

	scripts scriptCache
	tags    slotTags

	// scripter runs the gateway packages' scripts through the router;
	// gateway maps gateway command names to their handlers (read-only
	// after New).
	scripter *routerScripter
	gateway  map[string]gatewayFunc
	// gwWorkers run the gateway commands' handlers.
	gwWorkers workers

	// users are the client users, replaced whole by SetUsers; authLimit
	// rate-limits failed authentication (nil: off).
	users     atomic.Pointer[userSet]
	authLimit *authLimiter

	nextID  atomic.Int64
	clients atomic.Int64
	calls   sync.Pool // *call
	// readBufs holds free client read buffers of readBufSize bytes
	// (readbuf.go).
	readBufs    sync.Pool
	readBufSize int
	writers     sync.Pool // *bufio.Writer of client replies, between bursts
	fans        sync.Pool // *fanout

	// Settings that Reload may change while serving.
	maxClients   atomic.Int64
	idleTimeout  atomic.Int64 // nanoseconds
	writeTimeout atomic.Int64 // nanoseconds; ClientWriteTimeout
	slow         slowlog
	hot          hotkeysState // HOTKEYS

	pause    pauser   // CLIENT PAUSE
	monitors monitors // sessions in MONITOR mode
	tracking *tracker // CLIENT TRACKING (tracking.go)
	acllog   aclLog   // ACL LOG

	// For INFO stats: connections refused by MaxClients, commands of the
	// sessions that ended (guarded by mu), and the ops rate samples.
	rejected   atomic.Int64
	cmdsClosed int64
	opsRate    opsRate

	mu        sync.Mutex // guards listeners, sessions, closing
	listeners map[net.Listener]struct{}
	sessions  map[*session]struct{}
	closing   bool
	wg        sync.WaitGroup // sessions
}

// New returns a Server that routes through r with command table t.
func New(cfg Config, r *router.Router, t *command.Table) (*Server, error) {
	if r == nil || t == nil {
		return nil, errors.New("proxy: router and command table are required")
	}
	cfg = cfg.withDefaults()
	s := &Server{
		cfg:       cfg,
		router:    r,
		table:     t,
		log:       cfg.Logger,
		obs:       cfg.Observer,
		listeners: map[net.Listener]struct{}{},
		sessions:  map[*session]struct{}{},
		started:   time.Now(),
	}
	s.tracking = newTracker(s, cfg.TrackingMaxKeys)
	s.calls.New = func() any { return newCall() }
	s.readBufSize = cfg.Limits.BufferSize
	if s.readBufSize <= 0 {
		s.readBufSize = resp.DefaultBufferSize
	}
	s.Reload(Settings{MaxClients: cfg.MaxClients, IdleTimeout: cfg.IdleTimeout,
		ClientWriteTimeout: cfg.ClientWriteTimeout,
		SlowlogThreshold:   cfg.SlowlogThreshold, SlowlogMaxLen: cfg.SlowlogMaxLen})
	s.setNodeID("")
	s.scripter = &routerScripter{r: r, conn: -1}
	if err := s.addGateway(); err != nil {
		return nil, err
	}
	s.addHotkeys()
	s.authLimit = newAuthLimiter(cfg.AuthMaxFailures, cfg.AuthFailureWindow, cfg.AuthBlockTime)
	if err := s.SetUsers(cfg.Users); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Server) setNodeID(addr string) {
	if s.cfg.AnnounceAddr != "" {
		addr = s.cfg.AnnounceAddr
	}
	sum := sha1.Sum([]byte("clusterproxy:" + addr))
	s.nodeID = hex.EncodeToString(sum[:])
}

// Serve accepts connections on ln until Close. It returns nil after Close.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return errors.New("proxy: server closed")
	}
	s.listeners[ln] = struct{}{}
	if len(s.listeners) == 1 && s.cfg.AnnounceAddr == "" {
		s.setNodeID(ln.Addr().String())
	}
	s.mu.Unlock()
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Out of file descriptors or a transient error: wait, do
				// not spin.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed", "err", err, "retry_in", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("proxy: accept: %w", err)
		}
		backoff = 0
		s.startSession(conn)
	}
}

func (s *Server) startSession(conn net.Conn) {
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
		_ = tc.SetKeepAlive(true)
	}
	if n := s.clients.Add(1); n > s.maxClients.Load() {
		s.clients.Add(-1)
		s.rejected.Add(1)
		go refuse(conn)
		return
	}
	sess := newSession(s, conn, s.nextID.Add(1))
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		s.clients.Add(-1)
		conn.Close()
		return
	}
	s.sessions[sess] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	s.obs.ClientConnected()
	go func() {
		defer s.wg.Done()
		defer s.obs.ClientDisconnected()
		sess.run()
		s.mu.Lock()
		delete(s.sessions, sess)
		s.cmdsClosed += sess.cmds.Load()
		s.mu.Unlock()
		s.clients.Add(-1)
	}()
}

// refuseTimeout bounds answering a client refused for MaxClients.
const refuseTimeout = 2 * time.Second

// refuse tells a client beyond MaxClients so and closes it. It runs on its
// own goroutine, within refuseTimeout: the write does a TLS client's
// handshake, and a client that never completes it must not hold up the
// accept loop.
func refuse(conn net.Conn) {
	_ = conn.SetDeadline(time.Now().Add(refuseTimeout))
	_, _ = conn.Write([]byte("-ERR max number of clients reached\r\n"))
	conn.Close()
}

// Clients returns the number of connected clients.
func (s *Server) Clients() int { return int(s.clients.Load()) }

// Shutdown stops accepting, lets sessions finish the commands they already
// read (until ctx ends), then closes every connection.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for ln := range s.listeners {
		ln.Close()
	}
	for sess := range s.sessions {
		sess.stopReading()
	}
	s.mu.Unlock()
	s.pause.kick() // readers held by CLIENT PAUSE see they are stopped
	defer s.tracking.close()
	defer s.gwWorkers.close() // once every session is done: no more gateway command
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	for sess := range s.sessions {
		sess.conn.Close()
	}
	s.mu.Unlock()
	<-done
	return ctx.Err()
}

// Close closes the listeners and every client connection at once.
func (s *Server) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = s.Shutdown(ctx)
	return nil
}

func (s *Server) getCall() *call { return s.calls.Get().(*call) }

// clientWriteBuffer is the size of a client's reply buffer.
const clientWriteBuffer = 16 << 10

// getWriter returns a reply buffer writing to cw.
func (s *Server) getWriter(cw *clientWriter) *bufio.Writer {
	if w, ok := s.writers.Get().(*bufio.Writer); ok {
		w.Reset(cw)
		return w
	}
	return bufio.NewWriterSize(cw, clientWriteBuffer)
}

// putWriter gives back an empty reply buffer.
func (s *Server) putWriter(w *bufio.Writer) {
	w.Reset(nil) // forget the session
	s.writers.Put(w)
}

func (s *Server) putCall(c *call) {
	c.reset()
	s.calls.Put(c)
}
