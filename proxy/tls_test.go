package proxy_test

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/localcluster"
	"github.com/clusterproxy/clusterproxy/internal/testcerts"
	"github.com/clusterproxy/clusterproxy/internal/testcluster"
	"github.com/clusterproxy/clusterproxy/proxy"
	"github.com/clusterproxy/clusterproxy/router"
	"github.com/redis/go-redis/v9"
)

type testPKI struct {
	ca, otherCA                   *testcerts.CA
	node, proxySrv, client, rogue *testcerts.Leaf
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	var p testPKI
	var err error
	must := func(e error) {
		if e != nil {
			t.Fatal(e)
		}
	}
	p.ca, err = testcerts.NewCA("clusterproxy test CA")
	must(err)
	p.otherCA, err = testcerts.NewCA("some other CA")
	must(err)
	p.node, err = p.ca.Issue("redis node")
	must(err)
	p.proxySrv, err = p.ca.Issue("proxy")
	must(err)
	p.client, err = p.ca.Issue("client")
	must(err)
	p.rogue, err = p.otherCA.Issue("rogue client")
	must(err)
	return &p
}

func tlsCert(t *testing.T, l *testcerts.Leaf) tls.Certificate {
	t.Helper()
	c, err := l.TLS()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestTLS: a go-redis client speaks TLS to the proxy, which speaks TLS to a
// TLS-only cluster (nodes require client certificates); the data path works
// on every master. Clients without a certificate, with one from another CA,
// or not trusting the proxy's CA are refused; so is a proxy that does not
// trust the nodes' CA.
func TestTLS(t *testing.T) {
	pki := newPKI(t)
	dir := t.TempDir()
	caFile, err := pki.ca.Write(dir, "ca")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := pki.node.Write(dir, "node")
	if err != nil {
		t.Fatal(err)
	}
	cluster := testcluster.StartWith(t, localcluster.Options{
		TLS: &localcluster.TLSFiles{CertFile: certFile, KeyFile: keyFile, CAFile: caFile},
	})
	// The nodes serve TLS only.
	plain := redis.NewClient(&redis.Options{Addr: cluster.Addrs()[0], MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: time.Second})
	defer plain.Close()
	if err := plain.Ping(context.Background()).Err(); err == nil {
		t.Fatal("a node answered a plain-text PING")
	}

	nodeTLS := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pki.ca.Pool(), Certificates: []tls.Certificate{tlsCert(t, pki.client)}}
	p := startProxy(t, cluster, proxy.Config{}, router.Options{TLS: nodeTLS})
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := tls.NewListener(inner, &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{tlsCert(t, pki.proxySrv)},
		ClientCAs:    pki.ca.Pool(),
		ClientAuth:   tls.RequireAndVerifyClientCert,
	})
	go func() { _ = p.Server.Serve(ln) }()
	addr := ln.Addr().String()

	ctx := context.Background()
	client := func(cfg *tls.Config) *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: addr, TLSConfig: cfg, MaxRetries: -1, DisableIdentity: true,
			DialTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second})
		t.Cleanup(func() { c.Close() })
		return c
	}
	good := client(&tls.Config{RootCAs: pki.ca.Pool(), Certificates: []tls.Certificate{tlsCert(t, pki.client)}})
	for _, k := range keysOnEveryMaster(t, p, "tls", 12) {
		if err := good.Set(ctx, k, "v:"+k, 0).Err(); err != nil {
			t.Fatalf("SET %s over TLS: %v", k, err)
		}
		if v, err := good.Get(ctx, k).Result(); err != nil || v != "v:"+k {
			t.Fatalf("GET %s over TLS: %q %v", k, v, err)
		}
	}
	if st, err := good.Conn().Do(ctx, "PING").Result(); err != nil || st != "PONG" {
		t.Fatalf("PING: %v %v", st, err)
	}

	for name, cfg := range map[string]*tls.Config{
		"no client certificate":          {RootCAs: pki.ca.Pool()},
		"client certificate of other CA": {RootCAs: pki.ca.Pool(), Certificates: []tls.Certificate{tlsCert(t, pki.rogue)}},
		"proxy's CA not trusted":         {RootCAs: pki.otherCA.Pool(), Certificates: []tls.Certificate{tlsCert(t, pki.client)}},
		"TLS 1.1":                        {RootCAs: pki.ca.Pool(), Certificates: []tls.Certificate{tlsCert(t, pki.client)}, MaxVersion: tls.VersionTLS11},
	} {
		if err := client(cfg).Ping(ctx).Err(); err == nil {
			t.Errorf("%s: PING succeeded", name)
		}
	}
	// A plain-text client gets nothing useful from a TLS port.
	raw, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = raw.Write([]byte("PING\r\n"))
	buf := make([]byte, 64)
	n, _ := raw.Read(buf)
	if strings.Contains(string(buf[:n]), "PONG") {
		t.Fatal("plain-text PING answered on the TLS listener")
	}

	// A router that does not trust the nodes' CA cannot start.
	rt, err := router.New(router.Options{Seeds: cluster.Addrs()[:1], Logger: quietLogger(),
		TLS: &tls.Config{RootCAs: pki.otherCA.Pool(), Certificates: []tls.Certificate{tlsCert(t, pki.client)}}})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := rt.Start(sctx); err == nil {
		t.Fatal("router started against nodes whose CA it does not trust")
	}
}
