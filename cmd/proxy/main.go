// Command proxy runs clusterproxy: one Redis endpoint in front of a Redis
// Cluster, for plain (non-cluster) Redis clients.
//
//	proxy -listen 127.0.0.1:6380 -seeds 10.0.0.1:6379,10.0.0.2:6379
//	proxy -dev                      # also starts a local six-node cluster
//	proxy healthcheck -metrics-addr 127.0.0.1:9121
//
// Run "proxy -h" for every flag and its default.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/command"
	"github.com/clusterproxy/clusterproxy/internal/localcluster"
	"github.com/clusterproxy/clusterproxy/internal/resp"
	"github.com/clusterproxy/clusterproxy/internal/tracing"
	"github.com/clusterproxy/clusterproxy/metrics"
	"github.com/clusterproxy/clusterproxy/proxy"
	"github.com/clusterproxy/clusterproxy/router"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"
)

// version is the build's version, set with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "healthcheck" {
		os.Exit(healthcheck(os.Args[2:], os.Getenv, os.Stderr))
	}
	cfg, err := parseConfig(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "proxy:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "proxy:", err)
		os.Exit(1)
	}
}

func newLogger(cfg *Config, out io.Writer, level *slog.LevelVar) *slog.Logger {
	l, _ := parseLevel(cfg.LogLevel)
	level.Set(l)
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(out, opts))
	}
	return slog.New(slog.NewTextHandler(out, opts))
}

// run wires everything and serves until ctx ends (SIGINT/SIGTERM), then
// shuts down gracefully.
func run(ctx context.Context, cfg *Config, logOut io.Writer) error {
	level := new(slog.LevelVar) // SIGHUP may change it
	log := newLogger(cfg, logOut, level)
	base := *cfg // as parsed, before -dev fills in the seeds
	if cfg.Procs > 0 {
		runtime.GOMAXPROCS(cfg.Procs)
	}

	if cfg.Dev {
		cluster, err := startDevCluster(ctx, cfg, log)
		if err != nil {
			return err
		}
		defer func() {
			log.Info("stopping the dev cluster")
			if err := cluster.Stop(); err != nil {
				log.Error("stopping the dev cluster", "err", err)
			}
		}()
		if len(cfg.Seeds) == 0 {
			cfg.Seeds = cluster.Addrs()
		}
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m, err := metrics.New(reg, version)
	if err != nil {
		return err
	}

	nodeTLSConfig, err := nodeTLS(cfg, log)
	if err != nil {
		return err
	}
	listenTLS, err := clientTLS(cfg)
	if err != nil {
		return err
	}
	users, err := loadUsers(cfg, log)
	if err != nil {
		return err
	}
	var tracer trace.Tracer
	getenv := cfg.getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	if tracing.Enabled(cfg.Tracing, getenv) {
		tp, err := tracing.Start(ctx, getenv, version)
		if err != nil {
			return err
		}
		defer func() {
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := tp.Shutdown(fctx); err != nil {
				log.Warn("flushing traces", "err", err)
			}
		}()
		tracer = tp.Tracer()
		log.Info("tracing on (OTLP)")
	}

	rt, err := router.New(router.Options{
		Seeds:           cfg.Seeds,
		Username:        cfg.NodeUser,
		Password:        cfg.NodePassword,
		TLS:             nodeTLSConfig,
		ConnsPerNode:    cfg.ConnsPerNode,
		DialTimeout:     cfg.DialTimeout,
		ReadTimeout:     cfg.ReadTimeout,
		RetryWindow:     cfg.RetryWindow,
		RefreshInterval: cfg.RefreshInterval,
		ReadFrom:        readPolicy(cfg.ReadFrom),
		Logger:          log.With("component", "router"),
		Observer:        m,
	})
	if err != nil {
		return err
	}
	if err := metrics.RegisterInflight(reg, rt.Inflight); err != nil {
		return err
	}
	startCtx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()
	if err := rt.Start(startCtx); err != nil {
		return err
	}
	defer rt.Close()
	table, err := loadCommands(startCtx, rt)
	if err != nil {
		return err
	}

	srv, err := proxy.New(proxy.Config{
		Password:        cfg.Password,
		MaxClients:      cfg.MaxClients,
		MaxPipeline:     cfg.MaxPipeline,
		TrackingMaxKeys: cfg.TrackingMaxKeys,
		Limits:          resp.Limits{MaxBulk: cfg.MaxBulk, MaxElements: cfg.MaxArgs},
		IdleTimeout:     cfg.IdleTimeout,
		AnnounceAddr:    cfg.AnnounceAddr,

		WriteReplicas:        cfg.WriteReplicas,
		WriteReplicasTimeout: cfg.WriteReplicasTimeout,
		Logger:               log.With("component", "proxy"),
		Observer:             m,

		// Client users and the default user's rights (security.go).
		Users:               users,
		RestrictDefaultUser: !cfg.AllowDangerous,
		AuthMaxFailures:     cfg.AuthMaxFailures,
		AuthBlockTime:       cfg.AuthBlockTime,

		Tracer: tracer,

		SlowlogThreshold: slowlogThreshold(cfg.SlowlogThreshold),
		SlowlogMaxLen:    cfg.SlowlogMaxLen,

		ClientWriteTimeout: cfg.ClientWriteTimeout,
	}, rt, table)
	if err != nil {
		return err
	}
	if err := metrics.RegisterTracking(reg, func() metrics.TrackingStats {
		clients, keys, sent, flushes := srv.TrackingStats()
		return metrics.TrackingStats{Clients: clients, Keys: keys, Invalidations: sent, Flushes: flushes}
	}); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if listenTLS != nil {
		ln = tls.NewListener(ln, listenTLS)
	}

	var metricsSrv *http.Server
	if cfg.MetricsAddr != "" {
		mln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("metrics listen: %w", err)
		}
		metricsSrv = &http.Server{Handler: opsHandler(rt, reg, cfg.Pprof), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := metricsSrv.Serve(mln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics server", "err", err)
			}
		}()
	}

	reloadOnHUP(ctx, &base, srv, level, log)

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("proxy ready", "listen", ln.Addr().String(), "seeds", cfg.Seeds, "masters", len(rt.Masters()),
		"slots_covered", rt.SlotsCovered(), "commands", len(table.Names()),
		"tls", listenTLS != nil, "node_tls", nodeTLSConfig != nil)

	select {
	case <-ctx.Done():
		log.Info("shutting down", "timeout", cfg.ShutdownTimeout)
	case err := <-serveErr:
		if err != nil {
			return err
		}
	}
	sctx, scancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer scancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("shutdown deadline passed; closed remaining connections", "err", err)
	}
	if metricsSrv != nil {
		_ = metricsSrv.Shutdown(sctx)
	}
	return nil
}

// loadCommands builds the command table from the cluster's own COMMAND.
func loadCommands(ctx context.Context, rt *router.Router) (*command.Table, error) {
	var lastErr error
	for {
		c, err := rt.Client()
		if err == nil {
			var t *command.Table
			if t, err = command.Load(ctx, c); err == nil {
				return t, nil
			}
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("load command table: %w", lastErr)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func startDevCluster(ctx context.Context, cfg *Config, log *slog.Logger) (*localcluster.Cluster, error) {
	ports, err := parsePorts(cfg.DevPorts)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(cfg.DevDir)
	if err != nil {
		return nil, err
	}
	log.Info("starting the dev cluster", "dir", dir, "ports", cfg.DevPorts)
	c, err := localcluster.Start(ctx, localcluster.Options{
		Dir:      dir,
		Ports:    ports,
		Reuse:    true,
		Password: cfg.NodePassword,
		Logger:   log.With("component", "localcluster"),
	})
	if err != nil {
		return nil, fmt.Errorf("dev cluster: %w", err)
	}
	return c, nil
}

// opsHandler serves /metrics and the health endpoints: /healthz (the
// process is up) and /readyz (topology loaded and every slot served by a
// master).
func opsHandler(rt *router.Router, reg *prometheus.Registry, withPprof bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if n := rt.SlotsCovered(); n < router.SlotCount {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: %d of %d slots served\n", n, router.SlotCount)
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	return mux
}

// healthcheck is the container healthcheck: it asks /healthz on the metrics
// address and exits 0 when it answers 200.
func healthcheck(args []string, getenv func(string) string, out io.Writer) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(out)
	addr := fs.String("metrics-addr", getenv(envName("metrics-addr")), "metrics `address` of the proxy")
	path := fs.String("path", "/healthz", "endpoint to check (/healthz or /readyz)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *addr == "" {
		fmt.Fprintln(out, "healthcheck: -metrics-addr is required")
		return 2
	}
	host, port, err := net.SplitHostPort(*addr)
	if err != nil {
		fmt.Fprintln(out, "healthcheck:", err)
		return 2
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	client := http.Client{Timeout: 3 * time.Second}
	res, err := client.Get("http://" + net.JoinHostPort(host, port) + *path)
	if err != nil {
		fmt.Fprintln(out, "healthcheck:", err)
		return 1
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		fmt.Fprintln(out, "healthcheck:", res.Status)
		return 1
	}
	return 0
}

// readPolicy maps -read-from (validated) to the router's policy.
func readPolicy(s string) router.ReadPolicy {
	switch s {
	case "prefer-replica":
		return router.ReadPreferReplica
	case "prefer-master":
		return router.ReadPreferMaster
	}
	return router.ReadMaster
}
