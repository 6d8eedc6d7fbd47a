package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/testcluster"
	"github.com/clusterproxy/clusterproxy/router"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

func TestConfigPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "proxy.conf")
	content := "# comment\nlisten 127.0.0.1:7000\nmax-clients 5\nretry-window 3s\npassword \"from-file\"\n"
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"CLUSTERPROXY_CONFIG":      file,
		"CLUSTERPROXY_MAX_CLIENTS": "7",
		"CLUSTERPROXY_SEEDS":       "a:1,b:2",
	}
	cfg, err := parseConfig([]string{"-retry-window", "9s"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:7000" { // file
		t.Errorf("listen = %q", cfg.Listen)
	}
	if cfg.MaxClients != 7 { // environment over file
		t.Errorf("max-clients = %d", cfg.MaxClients)
	}
	if cfg.RetryWindow != 9*time.Second { // flag over file
		t.Errorf("retry-window = %v", cfg.RetryWindow)
	}
	if cfg.Password != "from-file" || strings.Join(cfg.Seeds, " ") != "a:1 b:2" || cfg.ConnsPerNode != 1 ||
		cfg.ClientWriteTimeout != time.Minute { // default
		t.Errorf("cfg = %+v", cfg)
	}
}

func TestConfigErrors(t *testing.T) {
	none := func(string) string { return "" }
	cases := map[string][]string{
		"-seeds is required":                         {},
		`"x" is not host:port`:                       {"-seeds", "x"},
		"-max-pipeline must be positive":             {"-seeds", "a:1", "-max-pipeline", "0"},
		"-client-write-timeout must not be negative": {"-seeds", "a:1", "-client-write-timeout", "-1s"},
		"-write-replicas must not be negative":       {"-seeds", "a:1", "-write-replicas", "-1"},
		"-write-replicas-timeout must be at least":   {"-seeds", "a:1", "-write-replicas", "1", "-write-replicas-timeout", "0"},
		"-log-level":          {"-seeds", "a:1", "-log-level", "loud"},
		"-dev-ports":          {"-dev", "-dev-ports", "7001-7003"},
		"unexpected argument": {"-seeds", "a:1", "extra"},
	}
	for want, args := range cases {
		_, err := parseConfig(args, none, io.Discard)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: got %v, want %q", args, err, want)
		}
	}
	file := filepath.Join(t.TempDir(), "bad.conf")
	os.WriteFile(file, []byte("no-such-setting 1\n"), 0o600)
	if _, err := parseConfig([]string{"-config", file, "-seeds", "a:1"}, none, io.Discard); err == nil || !strings.Contains(err.Error(), "unknown setting") {
		t.Errorf("unknown file setting: %v", err)
	}
}

// freePortRange finds six consecutive free loopback ports whose cluster bus
// ports (+10000) are free too.
func freePortRange(t *testing.T) int {
	t.Helper()
	free := func(p int) bool {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			return false
		}
		l.Close()
		return true
	}
	for try := 0; try < 200; try++ {
		base := 23000 + rand.IntN(8000)
		ok := true
		for p := base; p < base+6 && ok; p++ {
			ok = free(p) && free(p+10000)
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free port range")
	return 0
}

// TestDevModeLifecycle builds the binary, runs it in -dev mode, serves a
// command, stops it with SIGINT (no node process may remain), and starts it
// again on the same directory: the cluster and its data are reused.
func TestDevModeLifecycle(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "proxy")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	base := freePortRange(t)
	ports := fmt.Sprintf("%d-%d", base, base+5)
	ready := regexp.MustCompile(`msg="proxy ready" listen=(\S+)`)

	run := func(check func(c *redis.Client)) {
		cmd := exec.Command(bin, "-dev", "-dev-dir", dir, "-dev-ports", ports, "-listen", "127.0.0.1:0")
		stderr, _ := cmd.StderrPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		addr := make(chan string, 1)
		go func() {
			sc := bufio.NewScanner(stderr)
			for sc.Scan() {
				if m := ready.FindStringSubmatch(sc.Text()); m != nil {
					addr <- m[1]
				}
			}
		}()
		select {
		case a := <-addr:
			c := redis.NewClient(&redis.Options{Addr: a})
			check(c)
			c.Close()
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatal("proxy -dev did not become ready")
		}
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("proxy exited with %v after SIGINT", err)
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Fatal("proxy did not exit after SIGINT")
		}
		out, _ := exec.Command("pgrep", "-f", "redis-server 127.0.0.1:"+fmt.Sprint(base)).Output()
		if len(strings.TrimSpace(string(out))) > 0 {
			t.Fatalf("redis-server still running after the proxy stopped: pids %s", out)
		}
	}
	ctx := context.Background()
	run(func(c *redis.Client) {
		if err := c.Set(ctx, "dev:k", "kept", 0).Err(); err != nil {
			t.Fatal(err)
		}
	})
	run(func(c *redis.Client) {
		if v, err := c.Get(ctx, "dev:k").Result(); err != nil || v != "kept" {
			t.Fatalf("after restart GET = %q, %v", v, err)
		}
	})
}

// TestReadyzFollowsCoverage: /readyz answers 503 once a shard's master and
// replica are both gone (its slots have no master), and ready again when
// they are back.
func TestReadyzFollowsCoverage(t *testing.T) {
	cl := testcluster.Start(t)
	rt, err := router.New(router.Options{Seeds: cl.Addrs(), RefreshInterval: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := rt.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	srv := httptest.NewServer(opsHandler(rt, prometheus.NewRegistry(), false))
	defer srv.Close()
	status := func() int {
		res, err := http.Get(srv.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	waitStatus := func(want int) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for status() != want {
			if time.Now().After(deadline) {
				t.Fatalf("/readyz never answered %d (slots covered %d)", want, rt.SlotsCovered())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitStatus(http.StatusOK)
	masters, err := cl.MasterAddrs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	replicas, err := cl.ReplicasOf(ctx, masters[0])
	if err != nil || len(replicas) == 0 {
		t.Fatalf("replicas of %s: %v %v", masters[0], replicas, err)
	}
	for _, a := range append([]string{masters[0]}, replicas...) {
		if err := cl.KillNode(a); err != nil {
			t.Fatal(err)
		}
	}
	waitStatus(http.StatusServiceUnavailable)
	if n := rt.SlotsCovered(); n >= router.SlotCount {
		t.Fatalf("slots covered %d with a shard down", n)
	}
	for _, a := range append([]string{masters[0]}, replicas...) {
		if err := cl.RestartNode(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	waitStatus(http.StatusOK)
}

// -dev lets the default user run dangerous commands unless -allow-dangerous
// is given, by flag, environment or file; without -dev they are refused.
func TestAllowDangerousDefault(t *testing.T) {
	noEnv := func(string) string { return "" }
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want bool
	}{
		{args: []string{"-seeds", "a:1"}, want: false},
		{args: []string{"-dev"}, want: true},
		{args: []string{"-dev", "-allow-dangerous=false"}, want: false},
		{args: []string{"-dev"}, env: map[string]string{"CLUSTERPROXY_ALLOW_DANGEROUS": "false"}, want: false},
		{args: []string{"-seeds", "a:1", "-allow-dangerous"}, want: true},
	} {
		getenv := noEnv
		if tc.env != nil {
			getenv = func(k string) string { return tc.env[k] }
		}
		cfg, err := parseConfig(tc.args, getenv, io.Discard)
		if err != nil {
			t.Fatalf("%v %v: %v", tc.args, tc.env, err)
		}
		if cfg.AllowDangerous != tc.want {
			t.Errorf("%v %v: AllowDangerous = %v, want %v", tc.args, tc.env, cfg.AllowDangerous, tc.want)
		}
	}
}
