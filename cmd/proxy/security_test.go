package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/localcluster"
	"github.com/clusterproxy/clusterproxy/internal/testcerts"
	"github.com/clusterproxy/clusterproxy/internal/testcluster"
	"github.com/redis/go-redis/v9"
)

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSecurityConfig(t *testing.T) {
	dir := t.TempDir()
	none := func(string) string { return "" }
	pw := writeFile(t, dir, "pw", "client secret\n")
	npw := writeFile(t, dir, "npw", "node-secret\r\n")
	cfg, err := parseConfig([]string{"-seeds", "a:1", "-password-file", pw}, func(k string) string {
		return map[string]string{"CLUSTERPROXY_NODE_PASSWORD_FILE": npw}[k]
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Password != "client secret" || cfg.NodePassword != "node-secret" {
		t.Fatalf("passwords from files: %q %q", cfg.Password, cfg.NodePassword)
	}
	if cfg.AllowDangerous || cfg.AuthMaxFailures != 10 {
		t.Fatalf("defaults: %+v", cfg.Security)
	}
	// Logging the configuration never shows a secret.
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("config", "cfg", cfg)
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "cfg", cfg)
	if strings.Contains(buf.String(), "secret") || !strings.Contains(buf.String(), "***") {
		t.Fatalf("logged configuration: %s", buf.String())
	}

	for want, args := range map[string][]string{
		"-password and -password-file are exclusive": {"-seeds", "a:1", "-password", "x", "-password-file", pw},
		"-tls-cert and -tls-key go together":         {"-seeds", "a:1", "-tls-cert", "c"},
		"-tls-client-ca needs -tls-cert":             {"-seeds", "a:1", "-tls-client-ca", "c"},
		"-node-tls-* settings need -node-tls":        {"-seeds", "a:1", "-node-tls-ca", "c"},
		"is empty":                                   {"-seeds", "a:1", "-node-password-file", writeFile(t, dir, "empty", "\n")},
		"no such file":                               {"-seeds", "a:1", "-password-file", filepath.Join(dir, "nope")},
	} {
		if _, err := parseConfig(args, none, io.Discard); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: got %v, want %q", args, err, want)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writes (the log).
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestSecureDeployment runs the proxy as the binary does, from flags, in
// front of a TLS-only cluster that requires a password: client TLS with
// client certificates, node TLS with a client certificate, the node
// password from a file, users from a users file, the default user refused
// dangerous commands. The log never shows a password, not even when the
// node password is wrong.
func TestSecureDeployment(t *testing.T) {
	dir := t.TempDir()
	ca, err := testcerts.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	caFile, _ := ca.Write(dir, "ca")
	leaf := func(name string) (string, string, tls.Certificate) {
		l, err := ca.Issue(name)
		if err != nil {
			t.Fatal(err)
		}
		c, k, err := l.Write(dir, name)
		if err != nil {
			t.Fatal(err)
		}
		tc, _ := l.TLS()
		return c, k, tc
	}
	nodeCert, nodeKey, _ := leaf("node")
	proxyCert, proxyKey, _ := leaf("proxy")
	_, _, clientCert := leaf("client")
	const nodePassword = "n0de-pa55word"
	cluster := testcluster.StartWith(t, localcluster.Options{
		Password: nodePassword,
		TLS:      &localcluster.TLSFiles{CertFile: nodeCert, KeyFile: nodeKey, CAFile: caFile},
	})
	sum := sha256.Sum256([]byte("alice-pa55"))
	usersFile := writeFile(t, dir, "users", "user alice on #"+hex.EncodeToString(sum[:])+" ~sec:* +@all\n")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	args := func(nodePwFile string) []string {
		return []string{"-listen", addr, "-seeds", cluster.Addrs()[0], "-start-timeout", "20s",
			"-password", "default-pa55", "-users-file", usersFile,
			"-tls-cert", proxyCert, "-tls-key", proxyKey, "-tls-client-ca", caFile,
			"-node-tls", "-node-tls-ca", caFile, "-node-tls-cert", nodeCert, "-node-tls-key", nodeKey,
			"-node-password-file", nodePwFile, "-log-level", "debug"}
	}
	var logs syncBuffer
	cfg, err := parseConfig(args(writeFile(t, dir, "npw", nodePassword+"\n")), func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, &logs) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()

	clientTLS := &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{clientCert}}
	alice := redis.NewClient(&redis.Options{Addr: addr, TLSConfig: clientTLS, Username: "alice", Password: "alice-pa55", DisableIdentity: true})
	defer alice.Close()
	bg := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for alice.Ping(bg).Err() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("proxy not serving: %v\n%s", alice.Ping(bg).Err(), logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := alice.Set(bg, "sec:k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := alice.Get(bg, "other").Err(); err == nil || !strings.HasPrefix(err.Error(), "NOPERM") {
		t.Fatalf("alice GET other: %v", err)
	}
	def := redis.NewClient(&redis.Options{Addr: addr, TLSConfig: clientTLS, Password: "default-pa55", DisableIdentity: true})
	defer def.Close()
	if v, err := def.Get(bg, "sec:k").Result(); err != nil || v != "v" {
		t.Fatalf("default GET: %q %v", v, err)
	}
	if err := def.FlushAll(bg).Err(); err == nil || !strings.Contains(err.Error(), "no permissions to run the 'flushall' command") {
		t.Fatalf("default FLUSHALL without -allow-dangerous: %v", err)
	}
	if err := alice.Do(bg, "AUTH", "alice", "wrong-pa55").Err(); err == nil {
		t.Fatal("wrong password accepted")
	}

	// A wrong node password: the proxy cannot start, and says why without
	// the password.
	bad := args(writeFile(t, dir, "badpw", "wr0ng-n0de-pw\n"))
	bad[1] = "127.0.0.1:0"
	bad[5] = "3s"
	badCfg, err := parseConfig(bad, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var badLogs syncBuffer
	err = run(bg, badCfg, &badLogs)
	if err == nil {
		t.Fatal("started with a wrong node password")
	}
	all := err.Error() + logs.String() + badLogs.String()
	for _, secret := range []string{nodePassword, "wr0ng-n0de-pw", "alice-pa55", "default-pa55", "wrong-pa55"} {
		if strings.Contains(all, secret) {
			t.Fatalf("a password appears in the error or the logs: %s", all)
		}
	}
	if !strings.Contains(err.Error(), "WRONGPASS") {
		t.Errorf("the start error does not say why: %v", err)
	}
}
