package router

import (
	"crypto/tls"
	"log/slog"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/resp"
)

// Options configure a Router. Every zero field means the documented default.
type Options struct {
	// Seeds are host:port addresses used to discover the cluster. Host names
	// are resolved again at every refresh. Required.
	Seeds []string
	// Username and Password authenticate to the nodes (ACL user or
	// requirepass). Empty means no authentication.
	Username, Password string
	// TLS, when set, is used for every node connection.
	TLS *tls.Config

	// ConnsPerNode is the number of multiplexed connections per node and
	// protocol version. A client session always uses the same one of them, so
	// its commands to one node are executed in the order it sent them. One
	// connection batches the most commands per write (fewer system calls in
	// the proxy and the node); more help only when large replies would hold
	// up the small ones behind them. Default 1.
	ConnsPerNode int
	// MaxInflight bounds the requests written to one connection and not yet
	// answered; beyond it the writer waits (backpressure). Default 4096.
	MaxInflight int
	// QueueSize bounds the requests waiting to be written on one connection;
	// beyond it senders wait. Default 4096.
	QueueSize int

	// DialTimeout bounds connecting and the connection handshake. Default 2s.
	DialTimeout time.Duration
	// ReadTimeout is how long a connection may hold unanswered requests
	// without any reply before it is declared dead and its requests fail
	// with ErrTimeout. They are not resent, reads included: the node would
	// most likely keep silent, so ReadTimeout bounds a client's wait on it.
	// Default 10s.
	ReadTimeout time.Duration
	// RedialBackoff is the first wait after a failed dial; it doubles up to
	// MaxRedialBackoff. During the wait requests to that node fail fast.
	// Defaults 50ms and 1s.
	RedialBackoff, MaxRedialBackoff time.Duration

	// RefreshInterval is the period of the background topology refresh.
	// Default 5s.
	RefreshInterval time.Duration
	// RefreshCooldown is the least time between two refreshes triggered by
	// MOVED, CLUSTERDOWN or connection errors. Default 100ms.
	RefreshCooldown time.Duration
	// RetryWindow bounds how long a request is held and retried while its
	// slot has no reachable master (failover, restart, TRYAGAIN, LOADING).
	// It should be longer than the cluster's failover time. Default 15s.
	RetryWindow time.Duration
	// MaxRedirects bounds the MOVED/ASK hops of one request. Default 16.
	MaxRedirects int
	// RetiredGrace is how long connections to a node that left the topology
	// stay open for requests already sent to them. Default 10s.
	RetiredGrace time.Duration

	// ReadFrom says where requests marked ReadOnly go: ReadMaster (the
	// default), ReadPreferMaster or ReadPreferReplica. Replicas replicate
	// asynchronously, so a read sent to one may not see a write the master
	// acknowledged moments before, even one of the same client.
	ReadFrom ReadPolicy

	// ReplyLimits bound replies read from nodes. Zero fields mean resp defaults.
	ReplyLimits resp.Limits

	// Logger receives the router's logs. Default slog.Default().
	Logger *slog.Logger
	// Observer receives router events for metrics and traces. Default none.
	Observer Observer
}

// ReadPolicy is where read-only requests go.
type ReadPolicy int

const (
	// ReadMaster sends every request to the master of its slot.
	ReadMaster ReadPolicy = iota
	// ReadPreferReplica sends a read-only request to a replica of its
	// slot's master (the one Request.Conn picks, so that one client's reads
	// of a shard go to one replica, in order), and to the master when the
	// shard has no healthy replica or the replica fails, is loading or has
	// lost its master.
	ReadPreferReplica
	// ReadPreferMaster sends a read-only request to its slot's master, and
	// to a replica of it (the one Request.Conn picks) when the master
	// cannot be reached, its connection broke before the reply, or it did
	// not answer within ReadTimeout: reads go on while a master is down,
	// before the cluster fails it over, at the cost of possibly stale
	// answers in that time.
	ReadPreferMaster
)

// Observer is told about router events. Implementations must be fast and
// safe for concurrent use; they run on the request path.
type Observer interface {
	// Redirected is called for each MOVED, ASK, TRYAGAIN, CLUSTERDOWN or
	// LOADING reply handled by the router; kind is the lower-case error code.
	Redirected(kind string)
	// TopologyRefreshed is called after each refresh attempt with its reason
	// ("periodic", "moved", "error", "start", ...), the slots covered by a
	// master and the error (nil on success).
	TopologyRefreshed(reason string, slotsCovered int, err error)
}

// NodeObserver is implemented by an Observer that also wants per-node
// figures. NodeLatency is called once per node connection when it is
// created; the function it returns is called by that connection's reader
// with each reply's time from being written to being read, so it must be
// cheap (a histogram observation).
type NodeObserver interface {
	NodeLatency(addr string) func(time.Duration)
}

type nopObserver struct{}

func (nopObserver) Redirected(string)                    {}
func (nopObserver) TopologyRefreshed(string, int, error) {}

func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if o.ConnsPerNode <= 0 {
		o.ConnsPerNode = 1
	}
	if o.MaxInflight <= 0 {
		o.MaxInflight = 4096
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 4096
	}
	def(&o.DialTimeout, 2*time.Second)
	def(&o.ReadTimeout, 10*time.Second)
	def(&o.RedialBackoff, 50*time.Millisecond)
	def(&o.MaxRedialBackoff, time.Second)
	def(&o.RefreshInterval, 5*time.Second)
	def(&o.RefreshCooldown, 100*time.Millisecond)
	def(&o.RetryWindow, 15*time.Second)
	def(&o.RetiredGrace, 10*time.Second)
	if o.MaxRedirects <= 0 {
		o.MaxRedirects = 16
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	return o
}
